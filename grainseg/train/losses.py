"""Segmentation losses on logits: BCE, soft Dice and their weighted sum (DiceCE).

All take ``logits`` and ``target`` of shape (B, 1, H, W) (target in {0, 1}, float) and return a scalar
mean over the batch.  Multi-class logits (B, K, H, W) with an integer (B, H, W) target are handled by
cross-entropy and a softmax Dice.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BCELoss", "DiceLoss", "DiceCELoss", "build_loss", "LOSSES"]


def _check(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1 and target.shape != logits.shape:
        raise ValueError(f"target must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}")


def _one_hot(logits: Tensor, target: Tensor) -> Tensor:
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    return F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)


class BCELoss(nn.Module):
    """Binary cross-entropy on logits (the paper's loss); cross-entropy for multi-class logits."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return F.cross_entropy(logits.float(), target.reshape(target.shape[0], *target.shape[-2:]).long())


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


LOSSES: Dict[str, type] = {"bce": BCELoss, "dice": DiceLoss, "dicece": DiceCELoss}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Loss by name: ``"bce"``, ``"dice"`` or ``"dicece"`` (``ce_weight``, ``dice_weight``, ``smooth``)."""
    key = str(name).lower().replace("_", "").replace("-", "").replace("+", "")
    if key not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[key](**kwargs)
