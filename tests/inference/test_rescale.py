"""Magnification normalisation (rescale="auto"): the intercept estimate, the factor search, the wiring."""
import math

import numpy as np
import pytest
from PIL import Image

from tests.helpers.standin_model import StandInNet

from grainseg.inference.predict import analyze, predict_proba, predict_proba_rescaled
from grainseg.inference.rescale import (
    MIN_CROSSINGS, RESCALE_KEEP, RESCALE_TOL, find_rescale, line_intercept, mean_intercept, training_intercept,
)


def _grid(shape, period, width=2, offset=0):
    """Interior mask of square grains: boundary lines ``width`` px wide every ``period`` px."""
    m = np.ones(shape, bool)
    for axis in (0, 1):
        idx = (np.arange(shape[axis]) - offset) % period < width
        if axis == 0:
            m[idx, :] = False
        else:
            m[:, idx] = False
    return m


def test_line_intercept_of_a_grid_and_its_ends():
    m = _grid((200, 300), 20, offset=5)  # lines at 5, 25, ...: none touches an end
    length, crossings = line_intercept(m, step=1)
    # one crossing per 20 px, except on the rows and columns that run inside a 2 px line (1 in 10)
    assert length / crossings == pytest.approx(20.0 / 0.9, rel=0.03)
    # pixel size scales the lengths of each direction: rows use the width, columns the height
    length2, crossings2 = line_intercept(m, step=1, pixel=(2.0, 0.5))
    assert crossings2 == crossings and length2 == pytest.approx(200 * 299 * 0.5 + 300 * 199 * 2.0)
    # a boundary run at a line's end counts one half
    end = np.ones((1, 10), bool)
    end[0, :2] = False
    end[0, 6] = False
    # rows: the run at the start 1/2, the inner one 1; columns (2 px tall, wholly boundary) 1 - 1/2 - 1/2
    assert line_intercept(np.repeat(end, 2, 0), step=1)[1] == 2 * 1.5
    assert mean_intercept([np.ones((50, 50), bool)]) is None  # no boundary: no estimate
    with pytest.raises(ValueError, match="2 pixel sizes for 1 masks"):
        mean_intercept([np.ones((50, 50), bool)], pixels=[(1, 1), (2, 2)])
    with pytest.raises(ValueError, match="interior must be a non-empty"):
        line_intercept(np.ones((5,), bool))
    assert line_intercept(np.zeros((1, 9), bool), step=1) == (8.0, 0.0)  # a 1-px strip: one line, no crossing
    with pytest.raises(ValueError, match="step must be"):
        line_intercept(m, step=0)


def _fake(ref, l_at_1, slope):
    """predict_at / intercept_at of a model whose predicted intercept at factor g is l_at_1 * g**slope."""
    calls = []

    def predict_at(g):
        calls.append(g)
        return np.full((2, 2), g)

    def intercept_at(prob, g):
        return 1000.0 * l_at_1 * g ** slope, 1000.0

    return predict_at, intercept_at, calls


@pytest.mark.parametrize("slope", [0.4, 0.7, 1.0])
@pytest.mark.parametrize("start", [0.45, 0.7, 1.6, 2.5])
def test_find_rescale_converges_for_scale_sensitive_models(slope, start):
    ref = 70.0
    predict_at, intercept_at, calls = _fake(ref, ref * start, slope)
    prob, rec = find_rescale(predict_at, intercept_at, ref)
    expect = (1.0 / start) ** (1.0 / slope)  # where l_at_1 * g**slope == ref
    if not 0.25 <= expect <= 4.0:  # beyond the range: the search ends at its limit and says so
        assert rec["factor"] == pytest.approx(min(max(expect, 0.25), 4.0)) and "did not converge" in rec["note"]
        return
    assert rec["note"] is None, rec
    assert abs(math.log(rec["intercept_px"] / ref)) < math.log(RESCALE_TOL)
    assert rec["factor"] == pytest.approx(expect, rel=0.08)
    assert prob[0, 0] == pytest.approx(rec["factor"])  # the probability of the chosen pass comes back
    assert calls[0] == 1.0 and len(calls) <= 5


def test_find_rescale_keeps_an_image_inside_the_training_spread_and_reports_failures():
    ref = 70.0
    predict_at, intercept_at, calls = _fake(ref, ref * 0.95, 0.5)  # 5 % off: kept, one pass
    _, rec = find_rescale(predict_at, intercept_at, ref)
    assert rec["factor"] == 1.0 and calls == [1.0] and rec["note"] is None and 0.95 * ref < RESCALE_KEEP * ref
    # a model that predicts one grain size whatever it is shown (an out-of-domain micrograph) has no fixed
    # point: the second pass shows it, and the search stops with a warning, on the pass nearer the reference
    for slope in (0.0, -0.5):
        predict_at, intercept_at, calls = _fake(ref, ref * 2.0, slope)
        _, rec = find_rescale(predict_at, intercept_at, ref)
        assert "does not follow the magnification" in rec["note"] and len(calls) == 2
        assert rec["factor"] == 1.0  # the first pass is as near (slope 0) or nearer
    # a model that scales but slowly converges only to the range's end when the answer lies beyond it
    predict_at, intercept_at, calls = _fake(ref, ref * 2.0, 0.3)
    _, rec = find_rescale(predict_at, intercept_at, ref)
    assert "did not converge" in rec["note"] and rec["factor"] == pytest.approx(0.25)
    # too few grains on the first pass: not rescaled
    _, rec = find_rescale(lambda g: np.zeros((2, 2)), lambda p, g: (100.0, MIN_CROSSINGS - 1.0), ref)
    assert rec["factor"] == 1.0 and "too few grains" in rec["note"]
    with pytest.raises(ValueError, match="reference must be"):
        find_rescale(predict_at, intercept_at, -1.0)


def _micrograph():
    from grainseg.data.synthetic import make_micrograph

    m = make_micrograph((256, 256), n_grains=40, boundary_width=4, seed=3)
    img = m.image if m.image.ndim == 3 else np.repeat(m.image[..., None], 3, -1)
    return img.astype(np.uint8), m.mask


def test_auto_rescale_finds_the_magnification_of_an_enlarged_micrograph():
    img, _ = _micrograph()
    net = StandInNet(preprocessing={"normalize": "minmax", "input_size": [64, 64], "train_image_size": None})
    p1 = predict_proba(net, img)
    net.preprocessing = {**net.preprocessing, "grain_intercept_px": mean_intercept([p1 > 0.5])}
    big = np.asarray(Image.fromarray(img).resize((512, 512), Image.LANCZOS))
    prob, rec = predict_proba_rescaled(net, big, rescale="auto")
    assert prob.shape == (512, 512)
    assert rec["factor"] == pytest.approx(0.5, rel=0.1) and rec["note"] is None
    plain, none = predict_proba_rescaled(net, big, rescale=None)
    assert none is None and not np.array_equal(plain, prob)
    # a fixed factor feeds the image at that size (the stand-in sees 256 px at 0.5)
    net.calls = 0
    half, rec = predict_proba_rescaled(net, big, rescale=0.5, batch_size=64)
    assert rec == {"factor": 0.5} and half.shape == (512, 512)
    assert np.array_equal(half, predict_proba_rescaled(net, big, rescale=0.5)[0])


def test_auto_rescale_on_images_too_small_to_measure():
    net = StandInNet(preprocessing={"normalize": "minmax", "input_size": [64, 64], "grain_intercept_px": 20.0})
    for shape in ((1, 300), (300, 1), (5, 5)):
        prob, rec = predict_proba_rescaled(net, np.full(shape, 200, np.uint8), rescale="auto")
        assert prob.shape == shape and rec["factor"] == 1.0 and "too few grains" in rec["note"]


def test_rescale_arguments_and_models_without_a_reference():
    img, _ = _micrograph()
    net = StandInNet()
    for bad in ("big", 0.0, 10.0, float("nan"), True):
        with pytest.raises(ValueError, match="rescale must be"):
            predict_proba(net, img, rescale=bad)
    with pytest.raises(ValueError, match="grain_intercept_px"):
        predict_proba(net, img, rescale="auto")
    report = analyze(img, net, rescale="auto")  # the measurement falls back, with a warning
    assert "rescale" not in report.model and any("not rescaled" in w for w in report.warnings)


def test_bad_reference_in_a_preprocessing_record():
    from grainseg.data.preprocessing import normalize_preprocessing

    assert normalize_preprocessing({"grain_intercept_px": 70})["grain_intercept_px"] == 70.0
    for bad in (-3, 0, float("inf"), "70", True):
        with pytest.raises(ValueError, match="grain_intercept_px"):
            normalize_preprocessing({"grain_intercept_px": bad})


def test_training_intercept_of_a_data_set_in_network_pixels():
    class Set:
        def __init__(self, masks):
            self.masks = masks

        def __len__(self):
            return len(self.masks)

        def read_raw(self, i):
            return None, self.masks[i]

    ds = Set([_grid((100, 100), 20, offset=5).astype(np.uint8)] * 3)
    assert training_intercept(ds, None, step=1) == pytest.approx(20.0 / 0.9, rel=0.03)
    assert training_intercept(ds, [50, 50], step=1) == pytest.approx(10.0 / 0.9, rel=0.03)  # resized to 50 px: half


def test_cli_rescale_option(tmp_path, capsys):
    import json

    from grainseg.cli import main
    from grainseg.cli.predict import EXAMPLE_IMAGE

    assert main(["predict", "--example", "--rescale", "huge", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--rescale must be auto, none or a factor" in capsys.readouterr().err
    big = tmp_path / "big.png"  # the sample at 1.5x its pixels per grain
    Image.open(EXAMPLE_IMAGE).convert("RGB").resize((960, 720), Image.LANCZOS).save(big)
    assert main(["predict", str(big), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "fed at x0." in capsys.readouterr().out
    rec = json.loads((tmp_path / "o" / "big_summary.json").read_text())["model"]["rescale"]
    assert rec["factor"] == pytest.approx(1 / 1.5, rel=0.1) and rec["note"] is None
    assert main(["predict", str(big), "--out", str(tmp_path / "p"), "--quiet", "--rescale", "none"]) == 0
    assert "fed at" not in capsys.readouterr().out
    assert "rescale" not in json.loads((tmp_path / "p" / "big_summary.json").read_text())["model"]


def test_the_default_model_measures_a_shrunk_micrograph_like_the_original():
    """The embedded default at 0.6x the sample's pixels per grain: without rescaling G reads about 0.2
    low; the search feeds it back at about 1/0.6 and G comes within 0.1 of the original's."""
    from grainseg.cli.predict import EXAMPLE_IMAGE
    from grainseg.inference.predict import load_model

    model, _ = load_model(None)
    img = np.asarray(Image.open(EXAMPLE_IMAGE).convert("RGB"))
    small = np.asarray(Image.fromarray(img).resize((384, 288), Image.LANCZOS))
    g0 = analyze(img, model, scale=1.0, rescale=None).astm["planimetric"]["G"]
    auto = analyze(small, model, scale=1 / 0.6, rescale="auto")
    none = analyze(small, model, scale=1 / 0.6, rescale=None).astm["planimetric"]["G"]
    assert auto.model["rescale"]["factor"] == pytest.approx(1 / 0.6, rel=0.15)
    assert abs(auto.astm["planimetric"]["G"] - g0) < 0.1 < abs(none - g0)
