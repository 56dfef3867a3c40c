"""``grainseg evaluate`` on a tiny saved model: table, JSON with per-image and mean metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.tinydata import TINY_SIZE, tiny_model, write_tiny_exone

import grainseg
from grainseg.cli import main
from grainseg.data import SegmentationDataset
from grainseg.train.metrics import dice_score


def test_evaluate_cli_table_and_json(tmp_path, capsys):
    data = write_tiny_exone(tmp_path / "exone")
    model = tiny_model()
    model.preprocessing = {**model.preprocessing, "train_image_size": [TINY_SIZE, TINY_SIZE]}
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--split", "paper",
                 "--subset", "test", "--json", str(out), "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mean (n=2)" in printed and "boundary_f1" in printed
    result = json.loads(out.read_text())
    assert [r["name"] for r in result["per_image"]] == ["RG7_1_1.jpg", "RG8_1_1.jpg"]
    assert result["mean"]["dice"] == pytest.approx(np.mean([r["dice"] for r in result["per_image"]]))
    assert result["model"]["architecture"] == "UNet" and result["split"] == "paper"
    # the per-image numbers are what predict_proba gives at the image's own resolution
    loaded = grainseg.from_pretrained(tmp_path / "model")
    ds = SegmentationDataset(data, "paper", "test")
    image, mask = ds.read_raw(0)
    prob = grainseg.inference.predict_proba(loaded, image)
    assert prob.shape == mask.shape
    assert result["per_image"][0]["dice"] == pytest.approx(dice_score(prob, mask))
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--json", str(out)])
