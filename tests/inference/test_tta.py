"""Test-time augmentation: inverse transforms line up, probabilities (not logits) are averaged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from grainseg.inference import predict_proba
from grainseg.inference.tta import TRANSFORMS, TTA, resolve_tta


class Corner(nn.Module):
    """Not rotation-invariant: logit = 4 * x of channel 0 plus a ramp along the width."""
    in_chans = 3

    def __init__(self, k: int = 1):
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        ramp = torch.linspace(-2, 2, x.shape[-1]).expand_as(x[:, :1])
        out = 4 * x[:, :1] + ramp + self.w
        return out if self.k == 1 else torch.cat([-out, out], 1)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_inverse_undoes_its_transform(name):
    x = torch.randn(2, 3, 8, 8)
    for fwd, inv in TRANSFORMS[name]:
        assert torch.equal(inv(fwd(x)), x)
    images = {tuple(fwd(x).flatten().tolist()) for fwd, _ in TRANSFORMS[name]}
    assert len(images) == len(TRANSFORMS[name])  # no transform listed twice


def test_d4_averages_probabilities_of_the_eight_views():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 6)
    model = Corner()
    expected = torch.stack([torch.sigmoid(inv(model(fwd(x)))) for fwd, inv in TRANSFORMS["d4"]]).mean(0)
    got = torch.sigmoid(TTA(model, "d4")(x))
    assert torch.allclose(got, expected, atol=1e-6)
    # the ramp is antisymmetric under the horizontal flip: averaged over h-flips it vanishes
    flat = torch.sigmoid(TTA(model, "hflip")(torch.zeros(1, 3, 6, 6)))
    assert torch.allclose(flat, torch.full_like(flat, 0.5), atol=1e-6)


def test_two_class_model_and_none():
    x = torch.randn(2, 3, 6, 6)
    model = Corner(k=2)
    out = TTA(model, "flips")(x)
    assert out.shape == (2, 2, 6, 6)
    assert torch.allclose(out.exp().sum(1), torch.ones(2, 6, 6), atol=1e-5)
    assert torch.allclose(torch.sigmoid(TTA(Corner(), "none")(x)), torch.sigmoid(Corner()(x)), atol=1e-5)


def test_non_square_inputs_keep_only_the_flips():
    x = torch.randn(1, 3, 6, 8)
    assert torch.allclose(TTA(Corner(), "d4")(x), TTA(Corner(), "flips")(x), atol=1e-6)
    assert TTA(Corner(), "d4")(x).shape == (1, 1, 6, 8)
    with pytest.raises(ValueError, match=r"TTA input must be \(N, C, H, W\)"):
        TTA(Corner())(torch.randn(3, 6, 6))


@pytest.mark.parametrize("bad", ["rot", 3, "D4", ""])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError, match="tta must be True, False or one of"):
        resolve_tta(bad)
    assert resolve_tta(True) == "d4" and resolve_tta(False) == resolve_tta(None) == "none"


def test_wrapper_passes_model_attributes_and_works_in_predict_proba():
    model = Corner()
    model.preprocessing = {"input_size": [8, 8]}
    wrapped = TTA(model, "d4")
    assert wrapped.preprocessing == model.preprocessing and wrapped.in_chans == 3
    image = np.random.default_rng(0).integers(0, 255, (20, 28, 3), dtype=np.uint8)
    prob = predict_proba(wrapped, image)
    assert prob.shape == (20, 28) and 0 <= prob.min() and prob.max() <= 1


def test_predict_proba_tta_matches_the_wrapper_and_keeps_the_training_mode():
    model = Corner()
    model.preprocessing = {"input_size": [8, 8]}
    model.train()
    image = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    got = predict_proba(model, image, tta="flips")
    assert model.training  # the wrapper must not leave the user's model in another mode
    assert np.allclose(got, predict_proba(TTA(model, "flips"), image), atol=1e-6)
    assert not np.allclose(got, predict_proba(model, image), atol=1e-3)  # the ramp makes the views differ
    with pytest.raises(ValueError, match="tta must be"):
        predict_proba(model, image, tta="rot")


def _spy_on_predict_proba(monkeypatch):
    """Record the ``tta`` of every prediction (every path goes through predict_proba_rescaled)."""
    import grainseg.inference.predict

    seen, real = [], grainseg.inference.predict.predict_proba_rescaled

    def spy(*args, **kwargs):
        seen.append(kwargs.get("tta"))
        return real(*args, **kwargs)

    monkeypatch.setattr(grainseg.inference.predict, "predict_proba_rescaled", spy)
    return seen


def test_evaluate_cli_applies_and_records_the_tta(tmp_path, monkeypatch):
    import json

    from tests.helpers.tinydata import TINY_SIZE, tiny_model, write_tiny_exone

    from grainseg.cli import main

    seen = _spy_on_predict_proba(monkeypatch)

    data = write_tiny_exone(tmp_path / "exone")
    model = tiny_model()
    model.preprocessing = {**model.preprocessing, "train_image_size": [TINY_SIZE, TINY_SIZE]}
    model.save_pretrained(tmp_path / "model")
    for tta in ("none", "d4"):
        out = tmp_path / f"eval_{tta}.json"
        assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--split", "paper",
                     "--subset", "test", "--json", str(out), "--device", "cpu", "--quiet", "--tta", tta]) == 0
    plain, d4 = (json.loads((tmp_path / f"eval_{t}.json").read_text()) for t in ("none", "d4"))
    assert "tta" not in plain["model"] and d4["model"]["tta"] == "d4"
    assert seen and set(seen) == {"none", "d4"} and seen.count("d4") == len(seen) // 2


def test_validate_applies_and_records_the_tta(tmp_path, monkeypatch):
    import json

    from tests.inference.test_validate import _write_tiled

    from grainseg.cli import main

    seen = _spy_on_predict_proba(monkeypatch)
    data = _write_tiled(tmp_path / "exone", sources=(1, 2), grid=(1, 2), tile=64)
    out = tmp_path / "v"
    assert main(["validate", "--data", str(data), "--split", "grouped", "--subset", "test", "--out", str(out),
                 "--quiet", "--no-panels", "--tta", "hflip", "--rescale", "none"]) == 0
    assert seen == ["hflip"]  # one stitched micrograph
    assert json.loads((out / "validation.json").read_text())["model"]["tta"] == "hflip"
