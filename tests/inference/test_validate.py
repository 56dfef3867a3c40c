"""grainseg validate: stitching tiles, grain-level metrics, dG, outputs, bad input."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.standin_model import StandInNet

from grainseg.data.synthetic import make_micrograph
from grainseg.inference.validate import collect_labelled, validate, write_outputs


def _write_tiled(root: Path, sources=(1, 2), grid=(2, 3), tile=96, seed=0):
    """ExONE layout: each source micrograph cut into grid tiles RG{s}_{r}_{c}; splits.json 'grouped'."""
    (root / "RG").mkdir(parents=True)
    (root / "RGMask").mkdir()
    names = {}
    for s in sources:
        h, w = grid[0] * tile, grid[1] * tile
        m = make_micrograph((h, w), n_grains=30, boundary_width=5, seed=seed + s)
        img = m.image if m.image.ndim == 3 else np.repeat(m.image[..., None], 3, -1)
        names[s] = []
        for r in range(grid[0]):
            for c in range(grid[1]):
                sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                n = f"RG{s}_{r + 1}_{c + 1}"
                Image.fromarray(img[sl].astype(np.uint8)).save(root / "RG" / f"{n}.png")
                Image.fromarray((m.mask[sl] * 255).astype(np.uint8)).save(root / "RGMask" / f"RGMask{n[2:]}.png")
                names[s].append(f"{n}.png")
    (root / "splits.json").write_text(json.dumps({"grouped": {"train": names[sources[0]], "val": [], "test":
                                                             sum((names[s] for s in sources[1:]), [])}}))
    return root


def _mask_net(mask: np.ndarray) -> StandInNet:
    """A 'model' whose logits are a fixed mask (grain 1, boundary 0), at the mask's own size."""

    class MaskNet(StandInNet):
        def forward(self, x):
            import torch
            return (torch.from_numpy(mask).float()[None, None] * 20 - 10).expand(x.shape[0], 1, *x.shape[-2:])

    return MaskNet(preprocessing={"normalize": "minmax", "input_size": list(mask.shape),
                                  "train_image_size": list(mask.shape)})


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    return _write_tiled(tmp_path_factory.mktemp("val") / "exone")


def test_tiles_are_stitched_into_micrographs(tiled):
    items = collect_labelled(tiled)
    assert [i.name for i in items] == ["RG1", "RG2"]
    image, mask = items[0].load()
    assert image.shape[:2] == mask.shape == (192, 288)
    assert len(collect_labelled(tiled, stitch="never")) == 12
    test = collect_labelled(tiled, "grouped", "test")
    assert [i.name for i in test] == ["RG2"]
    # an incomplete grid is measured tile by tile
    (tiled / "RG" / "RG2_2_3.png").rename(tiled / "RG2_2_3.png")
    (tiled / "RGMask" / "RGMask2_2_3.png").rename(tiled / "RGMask2_2_3.png")
    try:
        names = [i.name for i in collect_labelled(tiled)]
        assert names[0] == "RG1" and len(names) == 6 and "RG2_1_1" in names
    finally:
        (tiled / "RG2_2_3.png").rename(tiled / "RG" / "RG2_2_3.png")
        (tiled / "RGMask2_2_3.png").rename(tiled / "RGMask" / "RGMask2_2_3.png")


def test_validate_rows_summary_and_outputs(tiled, tmp_path):
    model = StandInNet(preprocessing={"normalize": "minmax", "input_size": [96, 96], "train_image_size": [96, 96]})
    items = collect_labelled(tiled)
    res = validate(model, items, keep_maps=True)
    rows, s = res["rows"], res["summary"]
    assert len(rows) == 2 and s["n_images"] == 2
    for r in rows:
        assert 0.5 < r["dice"] <= 1 and 0 <= r["adapted_rand_error"] <= 1 and r["vi_split"] >= 0
        assert r["grains_true"] > 10 and r["dG_planimetric"] == pytest.approx(r["G_planimetric_pred"] - r["G_planimetric_true"])
    assert s["mean_abs_dG_planimetric"] == pytest.approx(np.mean([abs(r["dG_planimetric"]) for r in rows]))
    paths = write_outputs(res, tmp_path / "o", meta={"model": {"id": "standin"}})
    rec = json.loads(paths["json"].read_text())
    assert rec["model"]["id"] == "standin" and len(rec["images"]) == 2 and "mean_abs_dG_intercept" in rec["summary"]
    assert paths["csv"].read_text().count("\n") == 3
    panel = np.asarray(Image.open(paths["panel:RG1"]))
    assert panel.shape[1] > 4 * 400 and panel.ndim == 3
    with pytest.raises(FileExistsError):
        write_outputs(res, tmp_path / "o")


def test_a_perfect_prediction_has_zero_dg(tiled):
    """A 'model' that returns the truth mask itself: dG = 0, ARE ~ 0, Dice 1."""
    items = collect_labelled(tiled, "grouped", "test")
    _, mask = items[0].load()

    res = validate(_mask_net(mask), items, grain_kw={"method": "threshold"})
    r = res["rows"][0]
    assert r["dice"] == pytest.approx(1.0) and r["dG_planimetric"] == pytest.approx(0, abs=1e-9)
    assert r["dG_intercept"] == pytest.approx(0, abs=1e-9) and r["adapted_rand_error"] < 1e-6
    # the true G is the predicted one, so it lies in the sampling interval; no model error given, none reported
    assert r["G_planimetric_true_in_ci95"] is True and r["G_intercept_true_in_ci95"] is True
    assert "G_planimetric_true_in_ci95_with_model_error" not in r
    assert res["summary"]["true_in_ci95_planimetric"] == [1, 1]
    assert res["summary"]["true_in_ci95_with_model_error_planimetric"] is None


def test_coverage_of_the_interval_with_the_model_error(tiled):
    """A model that splits every grain: the sampling interval misses the true G, an
    interval widened by a model error of that size holds it, and the summary counts both."""
    items = collect_labelled(tiled, "grouped", "test")
    _, mask = items[0].load()
    thick = (mask > 0).copy()
    thick[::24, :] = False  # extra straight boundaries every 24 px: every grain split, G too high
    thick[:, ::24] = False

    net = _mask_net(thick)
    base = validate(net, items, grain_kw={"method": "threshold"})
    r = base["rows"][0]
    err = abs(r["dG_planimetric"])
    assert r["G_planimetric_true_in_ci95"] is False and err > 0  # the sampling interval alone misses it
    wide = validate(net, items, grain_kw={"method": "threshold"},
                    model_error={"rms_dG": {"planimetric": err, "intercept": 0.0, "intercept_direct_e112": 5.0}})
    w = wide["rows"][0]
    assert w["G_intercept_direct_e112_pred_ci95"] is not None
    # 5 G of error: the widened interval of the direct count holds any truth
    assert w["G_intercept_direct_e112_true_in_ci95_with_model_error"] is True
    assert wide["summary"]["true_in_ci95_with_model_error_intercept_direct_e112"] == [1, 1]
    lo, hi = w["G_planimetric_pred_ci95_with_model_error"]
    assert lo <= w["G_planimetric_true"] <= hi and w["G_planimetric_true_in_ci95_with_model_error"] is True
    assert w["G_intercept_pred_ci95_with_model_error"] == pytest.approx(w["G_intercept_pred_ci95"])  # rms 0: unchanged
    assert wide["summary"]["true_in_ci95_with_model_error_planimetric"] == [1, 1]
    from grainseg.inference.validate import format_validation

    assert "true G inside the predicted 95 % interval: planimetric 0/1 (with the model's error 1/1)" in \
        format_validation(wide)


def test_validate_cli_and_bad_input(tiled, tmp_path, capsys):
    from grainseg.cli import main

    with pytest.raises(ValueError, match="split 'nope'"):
        main(["validate", "--data", str(tiled), "--split", "nope", "--out", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        main(["validate", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="--core"):
        main(["validate", "--data", str(tiled), "--core", "2", "--out", str(tmp_path / "x")])
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        main(["validate", "--data", str(tiled), "--out", str(tmp_path / "file")])


def test_validate_cli_with_the_embedded_model_writes_json_csv_panels(tiled, tmp_path, capsys):
    from grainseg.cli import main

    out = tmp_path / "v"
    assert main(["validate", "--data", str(tiled), "--split", "grouped", "--subset", "test", "--out", str(out),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mean |dG| planimetric" in text and "RG2" in text
    assert "dG dir" in text and "direct E112 count" in text  # the third count, per image and in the summary
    rec = json.loads((out / "validation.json").read_text())
    assert rec["model"]["id"] == "grainseg/vmunet-aspp-small-exone316l" and rec["split"] == "grouped"
    assert rec["instances"]["method"] == "watershed" and (out / "RG2_panel.png").is_file()
    assert rec["rescale"] == "auto" and all(r["rescale"] > 0 for r in rec["images"])  # the factor used, per image
    assert "rescale" in (out / "validation.csv").read_text().splitlines()[0].split(",")
    # the embedded default records its grain-size error: every row says whether the widened interval holds G
    assert all(isinstance(r["G_planimetric_true_in_ci95_with_model_error"], bool) for r in rec["images"])
    assert "true G inside the predicted 95 % interval" in text and "with the model's error" in text
    # the record a model card takes: rms dG over the images, and it loads as one
    card = rec["grain_size_validation"]
    assert "intercept_direct_e112" in card["rms_dG"]  # the direct E112 count's error too, where measured
    for k in ("planimetric", "intercept", "intercept_direct_e112"):
        d = [r[f"dG_{k}"] for r in rec["images"]]
        assert card["rms_dG"][k] == pytest.approx(float(np.sqrt(np.mean(np.square(d)))), abs=1e-4)
    assert card["micrographs"] == len(rec["images"]) and "config.json" in card["how"] and "rms dG" in text
    assert card["settings"]["rescale"] == "auto" and card["settings"]["instances"]["method"] == "watershed"
    from grainseg.grains.astm import model_error_rms

    assert model_error_rms(card) == card["rms_dG"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["validate", "--data", str(tiled), "--split", "grouped", "--out", str(out), "--quiet"])
