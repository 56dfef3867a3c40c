"""Deep-supervision loss: one loss over a model's main and auxiliary logits.

Models with auxiliary heads (``vmunet_v2``, ``vmunet_v2_edge``, ``sa2net``) return only the main logits
from ``forward`` (so the trainer and tester treat them like every other model) and expose all heads via
``model.forward_aux(x)`` (:class:`grainseg.models.deep_supervision.DeepSupervisionMixin`): a list of
logits, main first, each (b, num_classes, h, w) at the input size.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from torch import Tensor

__all__ = ["deep_supervision_loss"]


def deep_supervision_loss(
    outputs: Sequence[Tensor],
    target: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    weights: Optional[Sequence[float]] = None,
) -> Tensor:
    """Weighted sum of ``loss_fn(output, target)`` over ``outputs`` (main first).

    ``weights`` defaults to 1 for the main output and 0.5 for each auxiliary one (weights need not sum to 1).
    """
    if len(outputs) == 0:
        raise ValueError("outputs must hold at least one logits tensor")
    if weights is None:
        weights = [1.0] + [0.5] * (len(outputs) - 1)
    if len(weights) != len(outputs):
        raise ValueError(f"weights must have one entry per output ({len(outputs)}), got {len(weights)}")
    total = None
    for w, out in zip(weights, outputs):
        if out.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"output size {tuple(out.shape[-2:])} differs from target size {tuple(target.shape[-2:])}")
        term = float(w) * loss_fn(out, target)
        total = term if total is None else total + term
    return total
