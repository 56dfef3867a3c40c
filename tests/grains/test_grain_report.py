"""GrainReport: from a probability map to counts, summary JSON, CSV, overlay and files (never overwriting)."""
import json

import numpy as np
import pytest
from PIL import Image

from grainseg.data.io import read_image
from grainseg.data.synthetic import make_micrograph
from grainseg.grains import GrainReport


@pytest.fixture(scope="module")
def micrograph():
    return make_micrograph((200, 260), n_grains=20, boundary_width=6, seed=3)


def test_exact_mask_gives_the_exact_grain_count(micrograph):
    s = micrograph
    r = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=None)
    assert r.grain_count == s.n_grains
    summary = r.summary
    assert summary["unit"] == "px" and summary["grain_count"] == s.n_grains
    assert summary["astm_e112"]["G_planimetric"] is None and "scale" in summary["astm_e112"]["note"]
    assert summary["boundary_fraction"] == pytest.approx(1 - s.mask.mean())
    assert summary["mean_area_px2"] == pytest.approx(200 * 260 / s.n_grains)  # the grains tile the image


def test_summary_with_scale_is_json(micrograph):
    s = micrograph
    r = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=0.8, model={"id": "m", "revision": "abc"})
    text = json.dumps(r.summary)
    back = json.loads(text)
    e = back["astm_e112"]
    for key in ("G_planimetric", "G_intercept"):
        assert isinstance(e[key], float)
        lo, hi = e[key + "_ci95"]
        assert lo <= e[key] <= hi
    assert back["model"] == {"id": "m", "revision": "abc"}
    assert back["unit"] == "um" and "mean_area_um2" in back and "median_equivalent_diameter_um" in back
    assert back["border_grain_count"] + int((~r.table["touches_border"]).sum()) == back["grain_count"]


def test_overlay_marks_boundaries(micrograph):
    s = micrograph
    r = GrainReport.from_probability(s.image, s.mask.astype(np.float32))
    ov = r.overlay(color=(255, 0, 0))
    assert ov.shape == (200, 260, 3) and ov.dtype == np.uint8
    red = np.all(ov == (255, 0, 0), axis=-1)
    assert 0.005 < red.mean() < 0.2
    assert s.mask[red].mean() < 0.2  # drawn on the predicted boundaries, not inside grains


def test_save_writes_everything_and_never_overwrites(micrograph, tmp_path):
    s = micrograph
    r = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=1.0)
    paths = r.save(tmp_path, "m")
    from grainseg.grains.plots import have_matplotlib

    assert sorted(p.name for p in paths.values()) == sorted(
        ["m_prob.png", "m_mask.png", "m_overlay.png", "m_e112.png", "m_labels.tif", "m_grains.csv", "m_summary.json"]
        + (["m_sizes.png"] if have_matplotlib() else []))
    prob = read_image(paths["probability"])
    assert prob.dtype == np.uint16 and prob.shape == (200, 260)
    np.testing.assert_array_equal(np.array(Image.open(paths["mask"])) > 127, s.mask > 0)
    labels = read_image(paths["labels"])
    assert labels.max() == r.grain_count and labels.dtype == np.uint32
    assert json.loads(paths["summary"].read_text())["grain_count"] == r.grain_count
    before = paths["summary"].read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        r.save(tmp_path, "m")
    assert paths["summary"].read_bytes() == before
    r.save(tmp_path, "m", overwrite=True)
    with pytest.raises(FileExistsError):
        r.to_csv(paths["grains"])
    assert r.to_csv(tmp_path / "other.csv").splitlines()[0].startswith("label,area_um2")


def test_bad_probability():
    with pytest.raises(ValueError, match="sizes differ"):
        GrainReport.from_probability(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="threshold"):
        GrainReport.from_probability(np.zeros((4, 4)), np.zeros((4, 4)), threshold=1.5)


def test_e112_pattern_picture_marks_every_direct_crossing(micrograph):
    from grainseg.grains.intercepts import e112_pattern, pattern_intercepts
    from skimage.measure import label

    s = micrograph
    r = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=1.0)
    pic = r.pattern_overlay()
    assert pic.shape == (200, 260, 3) and pic.dtype == np.uint8
    red = np.all(pic == (230, 0, 0), axis=-1)
    yellow = np.all(pic == (255, 220, 0), axis=-1)
    assert yellow.sum() > 500
    counts = pattern_intercepts(e112_pattern(s.mask.shape), boundary=~r.mask)["direct"]
    # one dot per crossing (dots of neighbouring crossings may touch, so at most that many blobs)
    assert 0.6 * sum(counts) <= label(red).max() <= sum(counts) + 1


def test_size_distribution_plot_or_none_without_matplotlib(micrograph, monkeypatch):
    from grainseg.grains import plots

    s = micrograph
    r = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=0.5, source="x/m.png")
    if plots.have_matplotlib():
        png = r.size_distribution_png()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert plots.size_distribution_png(np.array([1.0, 2.0]), "um") is None


def test_model_error_widens_the_g_intervals_only_when_the_model_records_it(micrograph):
    s = micrograph
    val = {"data": "held-out set", "material": "test alloy",
           "rms_dG": {"planimetric": 0.2, "intercept": 0.1, "intercept_direct_e112": 0.15}}
    with_val = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=0.8,
                                            model={"id": "m", "grain_size_validation": val}).summary["astm_e112"]
    assert with_val["G_intercept_direct_e112"] == with_val["intercept_e112_direct"]["G"]
    for k in ("planimetric", "intercept", "intercept_direct_e112"):
        lo, hi = with_val[f"G_{k}_ci95"]
        wlo, whi = with_val[f"G_{k}_ci95_with_model_error"]
        rms = val["rms_dG"][k]
        assert wlo < lo and whi > hi  # wider on both sides ...
        assert with_val[f"G_{k}"] - wlo >= 1.959964 * rms - 1e-9  # ... by at least the model's own 95 % half-width
    assert with_val["model_error"] == val and "test alloy" in with_val["model_error_note"]
    plain = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=0.8,
                                         model={"id": "m"}).summary["astm_e112"]
    assert plain["model_error"] is None and "sampling spread only" in plain["model_error_note"]
    assert "G_planimetric_ci95_with_model_error" not in plain
    # a card without the direct count's error widens the other two and leaves the direct interval as it is
    two = {**val, "rms_dG": {"planimetric": 0.2, "intercept": 0.1}}
    partial = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=0.8,
                                           model={"id": "m", "grain_size_validation": two}).summary["astm_e112"]
    assert "G_intercept_direct_e112_ci95_with_model_error" not in partial
    assert partial["G_intercept_ci95_with_model_error"] == with_val["G_intercept_ci95_with_model_error"]
    no_scale = GrainReport.from_probability(s.image, s.mask.astype(np.float32),
                                            model={"id": "m", "grain_size_validation": val}).summary["astm_e112"]
    assert "model_error" not in no_scale and no_scale["G_planimetric"] is None


@pytest.mark.parametrize("bad", ["0.2", {"rms_dG": 0.2}, {"rms_dG": {}}, {"rms_dG": {"planimetric": -0.1}},
                                 {"rms_dG": {"planimetric": float("nan")}}, {"rms_dG": {"planimetric": "0.2"}},
                                 {"rms_dG": {"volume": 0.2}}, {"data": "x"}])
def test_a_malformed_model_error_record_is_a_clear_error(micrograph, bad):
    from grainseg.grains.astm import model_error_rms

    with pytest.raises(ValueError, match="grain_size_validation must be a dict with 'rms_dG'"):
        model_error_rms(bad)
    s = micrograph
    report = GrainReport.from_probability(s.image, s.mask.astype(np.float32), scale=0.8,
                                          model={"id": "m", "grain_size_validation": bad})
    with pytest.raises(ValueError, match="rms_dG"):
        report.summary
