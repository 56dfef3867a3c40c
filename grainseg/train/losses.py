"""Segmentation losses on logits: BCE, soft Dice, their weighted sum (DiceCE) and a boundary-weighted BCE.

All take ``logits`` and ``target`` of shape (B, 1, H, W) (target in {0, 1}, float) and return a scalar
mean over the batch.  Multi-class logits (B, K, H, W) with an integer (B, H, W) target are handled by
cross-entropy and a softmax Dice.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BCELoss", "DiceLoss", "DiceCELoss", "BoundaryBCELoss", "boundary_weights", "build_loss", "LOSSES"]


def _check(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1 and target.shape != logits.shape:
        raise ValueError(f"target must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}")


def _one_hot(logits: Tensor, target: Tensor) -> Tensor:
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    return F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)


def _cross_entropy(logits: Tensor, target: Tensor, reduction: str) -> Tensor:
    # BCE on one logit channel, cross-entropy over K; reduction "none" gives (B, 1, H, W) either way
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction=reduction)
    out = F.cross_entropy(logits.float(), target.reshape(target.shape[0], *target.shape[-2:]).long(),
                          reduction=reduction)
    return out.unsqueeze(1) if reduction == "none" else out


class BCELoss(nn.Module):
    """Binary cross-entropy on logits (the paper's loss); cross-entropy for multi-class logits."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        return _cross_entropy(logits, target, "mean")


class DiceLoss(nn.Module):
    """1 - soft Dice per image, averaged over the batch; ``smooth`` keeps empty masks defined (loss 0 when
    both prediction and target are empty)."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        logits = logits.float()
        if logits.shape[1] == 1:
            prob, tgt = torch.sigmoid(logits), target.float()
        else:
            prob, tgt = torch.softmax(logits, dim=1), _one_hot(logits, target)
        dims = tuple(range(2, prob.dim()))
        inter = (prob * tgt).sum(dims)
        denom = prob.sum(dims) + tgt.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth).clamp_min(1e-12)
        return 1.0 - dice.mean()


class DiceCELoss(nn.Module):
    """``ce_weight * BCE + dice_weight * Dice``."""

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight == 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got ce_weight={ce_weight}, dice_weight={dice_weight}")
        self.ce_weight, self.dice_weight = float(ce_weight), float(dice_weight)
        self.bce, self.dice = BCELoss(), DiceLoss(smooth)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.ce_weight * self.bce(logits, target) + self.dice_weight * self.dice(logits, target)


def _check_band(weight: float, radius: int) -> None:
    if weight < 0 or radius < 0:
        raise ValueError(f"weight and radius must be >= 0, got weight={weight}, radius={radius}")


def boundary_weights(target: Tensor, weight: float = 4.0, radius: int = 3) -> Tensor:
    """Per-pixel weights (B, 1, H, W) that rise linearly towards the label boundaries of ``target``.

    A pixel is on a boundary when its 3x3 neighbourhood holds two labels (so both sides of a boundary
    count).  At Chebyshev distance ``d`` from the nearest such pixel the weight is
    ``1 + weight * (1 - d / (radius + 1))`` for ``d <= radius`` and 1 beyond; with ``weight=0`` it is 1.
    """
    _check_band(weight, radius)
    t = target.float()
    if t.dim() == 3:
        t = t.unsqueeze(1)
    hi = F.max_pool2d(t, 3, 1, 1)
    lo = -F.max_pool2d(-t, 3, 1, 1)
    edge = (hi != lo).float()
    ramp = sum(F.max_pool2d(edge, 2 * k + 1, 1, k) for k in range(radius + 1)) / (radius + 1)
    return 1.0 + float(weight) * ramp


class BoundaryBCELoss(nn.Module):
    """BCE (cross-entropy for multi-class logits) weighted towards the label boundaries.

    The weights of :func:`boundary_weights` (a linear ramp, in the spirit of U-Net's distance weighting)
    make the thin boundary lines, which decide boundary F1 and the grain count, cost more per pixel; the
    loss is the weighted mean, so its scale stays that of plain BCE.
    """

    def __init__(self, weight: float = 4.0, radius: int = 3) -> None:
        super().__init__()
        _check_band(weight, radius)
        self.weight, self.radius = float(weight), int(radius)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        w = boundary_weights(target.reshape(target.shape[0], 1, *target.shape[-2:]), self.weight, self.radius)
        return (_cross_entropy(logits, target, "none") * w).sum() / w.sum()


LOSSES: Dict[str, type] = {"bce": BCELoss, "dice": DiceLoss, "dicece": DiceCELoss, "boundarybce": BoundaryBCELoss}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Loss by name: ``"bce"``, ``"dice"``, ``"dicece"`` (``ce_weight``, ``dice_weight``, ``smooth``) or
    ``"boundary-bce"`` (``weight``, ``radius``)."""
    key = str(name).lower().replace("_", "").replace("-", "").replace("+", "")
    if key not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[key](**kwargs)
