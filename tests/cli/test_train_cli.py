"""``grainseg train`` end to end on tiny data."""
from __future__ import annotations

import json

import pytest

from tests.helpers.tinydata import TINY_SIZE, write_tiny_exone

from grainseg.cli import main

KW = json.dumps({"base_channels": 4, "preprocessing": {"input_size": [TINY_SIZE, TINY_SIZE]}})


def _args(data, out, *extra):
    return ["train", "--model", "unet", "--model-kwargs", KW, "--data", str(data), "--split", "paper",
            "--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--loss", "dicece", "--patience", "4",
            "--crop-size", "16", "--no-progress", "--out", str(out), *extra]


def test_train_cli_writes_run_and_refuses_to_overwrite(tmp_path, capsys):
    data = write_tiny_exone(tmp_path / "exone")
    out = tmp_path / "runs" / "tiny"
    assert main(_args(data, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and metrics["config"]["loss"] == "dicece"
    assert metrics["config"]["crop_size"] == [16, 16]
    assert (out / "best" / "config.json").is_file()
    assert "best epoch" in capsys.readouterr().out
    with pytest.raises(FileExistsError):
        main(_args(data, out))
    assert main(_args(data, out, "--resume", "--epochs", "3")) == 0  # continues to a third epoch
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 3


def test_train_cli_bad_arguments(tmp_path):
    data = write_tiny_exone(tmp_path / "exone")
    with pytest.raises(ValueError, match="batch_size"):
        main(_args(data, tmp_path / "o", "--batch-size", "0"))
    with pytest.raises(SystemExit):
        main(_args(data, tmp_path / "o", "--crop-size", "abc"))
    with pytest.raises(ValueError, match="unknown model"):
        main(["train", "--model", "nope", "--data", str(data), "--out", str(tmp_path / "o2")])
