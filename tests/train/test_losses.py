"""BCE, Dice and DiceCE on logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grainseg.train.losses import BCELoss, DiceCELoss, DiceLoss, build_loss


def _data():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    return logits, target


def test_bce_matches_torch():
    logits, target = _data()
    assert torch.allclose(BCELoss()(logits, target), F.binary_cross_entropy_with_logits(logits, target))


def test_dice_perfect_opposite_and_empty():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    perfect = (target * 2 - 1) * 50
    assert DiceLoss(smooth=0)(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert DiceLoss(smooth=0)(-perfect, target).item() == pytest.approx(1.0, abs=1e-6)
    empty = torch.zeros(1, 1, 4, 4)
    assert DiceLoss(smooth=1)(torch.full((1, 1, 4, 4), -50.0), empty).item() == pytest.approx(0.0, abs=1e-6)
    # hand value: sigmoid(0) = 0.5 everywhere, 8 of 16 target pixels: dice = 2*4 / (8 + 8) = 0.5
    assert DiceLoss(smooth=0)(torch.zeros(1, 1, 4, 4), target).item() == pytest.approx(0.5)


def test_dice_is_mean_over_images():
    t = torch.zeros(2, 1, 4, 4)
    t[0] = 1
    logits = torch.stack([torch.full((1, 4, 4), 50.0), torch.full((1, 4, 4), 50.0)])
    # image 0 perfect (loss 0); image 1: empty target, all predicted -> dice = smooth / (16 + smooth)
    expected = (0 + (1 - 1 / 17)) / 2
    assert DiceLoss(smooth=1)(logits, t).item() == pytest.approx(expected, rel=1e-5)


def test_dicece_is_weighted_sum_and_has_gradients():
    logits, target = _data()
    loss = DiceCELoss(ce_weight=0.3, dice_weight=2.0)(logits, target)
    expected = 0.3 * BCELoss()(logits, target) + 2.0 * DiceLoss()(logits, target)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_build_loss_and_errors():
    assert isinstance(build_loss("bce"), BCELoss)
    assert isinstance(build_loss("Dice_CE"), DiceCELoss)
    with pytest.raises(ValueError, match="loss must be one of"):
        build_loss("focal")
    with pytest.raises(ValueError, match="weights"):
        DiceCELoss(ce_weight=0, dice_weight=0)
    with pytest.raises(ValueError, match="target"):
        BCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
