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


def test_boundary_weights_ramp_by_distance_to_the_label_change():
    from grainseg.train.losses import boundary_weights
    t = torch.zeros(1, 1, 1, 12)
    t[..., 6:] = 1  # boundary between columns 5 and 6: both are edge pixels
    w = boundary_weights(t, weight=4.0, radius=3)[0, 0, 0]
    # distance 0 -> 1 + 4, 1 -> 1 + 3, 2 -> 1 + 2, 3 -> 1 + 1, beyond -> 1
    expected = torch.tensor([1, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 1], dtype=torch.float)
    assert torch.equal(w, expected)
    assert torch.equal(boundary_weights(t, weight=0.0), torch.ones_like(t))
    assert torch.equal(boundary_weights(torch.ones(1, 1, 5, 5)), torch.ones(1, 1, 5, 5))  # no boundary


def test_boundary_bce_is_the_weighted_mean_and_reduces_to_bce():
    from grainseg.train.losses import BoundaryBCELoss, boundary_weights
    logits, target = _data()
    assert torch.allclose(BoundaryBCELoss(weight=0.0)(logits, target), BCELoss()(logits, target))
    w = boundary_weights(target)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert torch.allclose(BoundaryBCELoss()(logits, target), (w * per_pixel).sum() / w.sum())
    # an error on a boundary pixel costs more than the same error far from one
    target = torch.zeros(1, 1, 1, 16)
    target[..., 8:] = 1
    perfect = (target * 2 - 1) * 20
    near, far = perfect.clone(), perfect.clone()
    near[..., 8] = -20.0
    far[..., 15] = -20.0
    loss = BoundaryBCELoss()
    assert loss(near, target) > 3 * loss(far, target)
    BoundaryBCELoss()(logits, target=_data()[1]).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_boundary_bce_by_name_and_bad_arguments():
    from grainseg.train.losses import BoundaryBCELoss
    assert isinstance(build_loss("boundary-bce"), BoundaryBCELoss)
    assert isinstance(build_loss("boundary_bce", weight=2.0, radius=1), BoundaryBCELoss)
    with pytest.raises(ValueError, match="weight and radius"):
        BoundaryBCELoss(weight=-1.0)
    with pytest.raises(ValueError, match="target must have"):
        BoundaryBCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
