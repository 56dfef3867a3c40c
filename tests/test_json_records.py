"""Every JSON record grainseg writes is strict JSON: NaN / inf become null, numpy values plain ones."""
from __future__ import annotations

import json

import numpy as np

from grainseg._json import dumps


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_are_null_and_numpy_values_plain():
    rec = {"hd95": float("nan"), "up": float("inf"), "f": np.float32(1.5), "i": np.int64(3), "b": np.bool_(True),
           "a": np.arange(3), "nested": [{"x": np.float64("nan")}], 4: (1, 2), "path": object}
    out = _strict(dumps(rec))
    assert out["hd95"] is None and out["up"] is None and out["nested"] == [{"x": None}]
    assert out["f"] == 1.5 and out["i"] == 3 and out["b"] is True and out["a"] == [0, 1, 2] and out["4"] == [1, 2]
    assert out["path"] == str(object)


def test_evaluate_writes_strict_json_when_a_metric_is_undefined(tmp_path, monkeypatch):
    """An all-boundary mask has no grain edge, so HD95 is undefined (NaN): the file must still parse."""
    from PIL import Image

    from grainseg.cli import main
    from tests.helpers.standin_model import StandInNet

    monkeypatch.setattr("grainseg.inference.predict.load_model",
                        lambda spec=None, device=None, revision=None: (StandInNet(), {"id": "standin"}))
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(tmp_path / "d" / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "d" / "masks" / "a.png")
    out = tmp_path / "e.json"
    assert main(["evaluate", "--data", str(tmp_path / "d"), "--split", "none", "--json", str(out), "--quiet"]) == 0
    rec = _strict(out.read_text())
    assert rec["per_image"][0]["hd95"] is None and rec["mean"]["hd95"] is None
