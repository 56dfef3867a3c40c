"""Model ensembles: the mean of the members' probabilities, one prepared input for all members."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from grainseg.inference import Ensemble, predict_proba


class Affine(nn.Module):
    """logit = a * channel 0 + b; with a preprocessing record like a trained model's."""
    in_chans = 3
    num_classes = 1

    def __init__(self, a: float, b: float, prep=None, k: int = 1):
        super().__init__()
        self.a, self.b, self.k = a, b, k
        self.preprocessing = prep or {"normalize": "minmax", "input_size": None, "train_image_size": None}
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        z = self.a * x[:, :1] + self.b + self.w
        return z if self.k == 1 else torch.cat([-z, z], 1)


def test_ensemble_averages_probabilities_not_logits():
    x = torch.randn(2, 3, 5, 7)
    members = [Affine(4.0, 0.0), Affine(-1.0, 2.0), Affine(0.5, -3.0)]
    got = torch.sigmoid(Ensemble(members)(x))
    expected = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
    assert torch.allclose(got, expected, atol=1e-6)
    # a confident member does not outvote: the mean of 0.999 and 0.001 is 0.5, the mean logit would be 0
    # as well, but of 0.999, 0.5, 0.5 it is 0.666 (mean logit: sigmoid(6.9 / 3) = 0.91)
    three = Ensemble([Affine(0.0, 6.9), Affine(0.0, 0.0), Affine(0.0, 0.0)])(torch.zeros(1, 3, 2, 2))
    assert torch.allclose(torch.sigmoid(three), torch.full((1, 1, 2, 2), 0.6663), atol=1e-3)


def test_one_member_is_the_model_and_two_class_logits_are_log_probabilities():
    x = torch.randn(1, 3, 4, 4)
    m = Affine(2.0, 0.5)
    assert torch.allclose(Ensemble([m])(x), m(x), atol=1e-4)
    out = Ensemble([Affine(2.0, 0.5, k=2), Affine(-1.0, 0.0, k=2)])(x)
    assert out.shape == (1, 2, 4, 4)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 4, 4), atol=1e-5)


def test_members_must_take_the_same_input():
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
    with pytest.raises(TypeError, match=r"models\[1\] must be a torch.nn.Module"):
        Ensemble([Affine(1, 0), "runs/x/best"])
    other = {"normalize": "minmax", "input_size": [64, 64], "train_image_size": None}
    with pytest.raises(ValueError, match=r"models\[1\].preprocessing\['input_size'\] is \[64, 64\]"):
        Ensemble([Affine(1, 0), Affine(1, 0, prep=other)])
    with pytest.raises(ValueError, match=r"models\[1\].num_classes is 2"):
        two = Affine(1, 0, k=2)
        two.num_classes = 2
        Ensemble([Affine(1, 0), two])


def test_grain_intercept_is_kept_and_predict_proba_uses_the_ensemble():
    base = {"normalize": "minmax", "input_size": None, "train_image_size": None}
    a, b = Affine(3.0, -1.0, prep=dict(base)), Affine(-2.0, 1.0, prep={**base, "grain_intercept_px": 40.0})
    ens = Ensemble([a, b])  # records that differ only in grain_intercept_px take the same input
    assert ens.preprocessing["grain_intercept_px"] == 40.0 and ens.in_chans == 3
    image = (np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8)
    p = predict_proba(ens, image)
    expected = (predict_proba(a, image) + predict_proba(b, image)) / 2
    assert p.shape == (20, 24)
    np.testing.assert_allclose(p, expected, atol=1e-5)
