"""The weights the repository ships still give the numbers their results files record."""
from __future__ import annotations

import json

import pytest

from grainseg import from_pretrained
from grainseg.data.datasets import SegmentationDataset
from grainseg.models.loading import bundled_dir
from grainseg.train.evaluation import evaluate_model
from tests.conftest import REPO

# (registered id, evaluation JSON of its model card's test numbers, how many of its images to re-check)
SHIPPED = [("grainseg/vmunet-aspp-exone316l", "eval_vmunet_aspp_paper_paper_test.json", 3)]


@pytest.mark.parametrize("repo_id, record, n_images", SHIPPED)
def test_shipped_model_reproduces_its_recorded_per_image_dice(repo_id, record, n_images, exone_data, tmp_path):
    if bundled_dir(repo_id.split("/")[1]) is None:
        pytest.skip(f"{repo_id} has no local copy in this checkout (it would come from the Hub)")
    recorded = json.loads((REPO / "benchmarks" / "results" / record).read_text())
    rows = recorded["per_image"][:n_images]
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"recheck": {"test": [r["name"] for r in rows]}}))
    ds = SegmentationDataset(exone_data, "recheck", "test", splits_file=splits)
    result = evaluate_model(from_pretrained(repo_id).eval(), ds, threshold=recorded["threshold"],
                            tolerance=recorded["tolerance_px"])
    for got, want in zip(result["per_image"], rows):
        assert got["name"] == want["name"]
        # the kernels may change rounding, not the masks: a few pixels of a 400x400 tile at most
        assert got["dice"] == pytest.approx(want["dice"], abs=2e-3), got["name"]
        assert got["boundary_f1"] == pytest.approx(want["boundary_f1"], abs=1e-2), got["name"]
