"""Run as the program, user errors are one ``error:`` line and exit 2 (train and evaluate as predict)."""
from __future__ import annotations

import json
import sys
import warnings

import pytest

from tests.helpers.tinydata import TINY_SIZE, write_tiny_exone

from grainseg.cli import main

KW = json.dumps({"base_channels": 4, "preprocessing": {"input_size": [TINY_SIZE, TINY_SIZE]}})


def _one_error_line(capsys, prog):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def test_train_usage_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    data = write_tiny_exone(tmp_path / "exone")
    base = ["train", "--model", "unet", "--model-kwargs", KW, "--data", str(data), "--no-progress"]
    assert main(base + ["--batch-size", "0", "--out", str(tmp_path / "o")], catch_errors=True) == 2
    assert "batch_size" in _one_error_line(capsys, "grainseg train")
    assert main(["train", "--model", "nope", "--data", str(data), "--out", str(tmp_path / "o2")], catch_errors=True) == 2
    assert "unknown model 'nope'" in _one_error_line(capsys, "grainseg train")
    assert main(base + ["--device", "foo", "--out", str(tmp_path / "o3")], catch_errors=True) == 2
    assert "device must be auto, cpu, cuda or cuda:N" in _one_error_line(capsys, "grainseg train")
    monkeypatch.setattr(sys, "argv", ["grainseg", *base, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o4")])
    assert main() == 2  # the console script calls main() without argv
    assert "does not exist" in _one_error_line(capsys, "grainseg train")
    with pytest.raises(ValueError):  # from Python with argv, the exception still propagates
        main(base + ["--batch-size", "0", "--out", str(tmp_path / "o")])


def test_evaluate_usage_errors_are_one_line_exit_2(tmp_path, capsys):
    data = write_tiny_exone(tmp_path / "exone")
    args = ["evaluate", "--model", str(tmp_path / "no_model"), "--data", str(data), "--json", str(tmp_path / "e.json")]
    assert main(args, catch_errors=True) == 2
    assert "no_model" in _one_error_line(capsys, "grainseg evaluate")


def test_warnings_print_as_one_line(capsys, monkeypatch):
    import grainseg.cli.models as models_cli

    def warn(args):
        warnings.warn("something odd", UserWarning)
        return 0

    monkeypatch.setattr(models_cli, "run", warn)
    monkeypatch.setattr(sys, "argv", ["grainseg", "models"])
    assert main() == 0
    assert capsys.readouterr().err.strip() == "grainseg models: warning: something odd"


def test_keyboard_interrupt_is_one_line_exit_130(tmp_path, capsys, monkeypatch):
    import grainseg.train.trainer as trainer

    def interrupted(cfg, model=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    data = write_tiny_exone(tmp_path / "exone")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "o")], catch_errors=True) == 130
    assert capsys.readouterr().err.strip() == "grainseg train: interrupted"




def test_evaluate_checks_the_json_path_before_evaluating(tmp_path, capsys, monkeypatch):
    import grainseg.train.evaluation as evaluation

    data = write_tiny_exone(tmp_path / "exone")
    monkeypatch.setattr(evaluation, "evaluate_model", lambda *a, **k: pytest.fail("evaluated first"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["evaluate", "--data", str(data), "--json", str(blocker / "sub" / "e.json")]
    assert main(args, catch_errors=True) == 2
    assert "--json" in _one_error_line(capsys, "grainseg evaluate")
    assert main(["evaluate", "--data", str(data), "--json", str(tmp_path)], catch_errors=True) == 2
    assert "is a folder" in _one_error_line(capsys, "grainseg evaluate")
    assert main(["evaluate", "--data", str(data), "--json", str(tmp_path / "e.json"), "--device", "foo"],
                catch_errors=True) == 2
    assert "--device must be" in _one_error_line(capsys, "grainseg evaluate")
