"""Deep-supervision helper: one loss over a model's main and auxiliary logits.

Models with auxiliary heads (``vmunet_v2``, ``vmunet_v2_edge``, ``sa2net``) return only the main logits
from ``forward`` (so the trainer and tester treat them like every other model) and expose all heads via
``model.forward_aux(x)``: a list of logits, main first, each (b, num_classes, h, w) at the input size.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from torch import Tensor

__all__ = ["deep_supervision_loss", "DeepSupervisionMixin"]


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


class DeepSupervisionMixin:
    """For SegmentationModel subclasses with auxiliary heads: implement ``all_logits(x, with_aux)`` (padded
    input -> list of logits at that size, main first); this mixin supplies ``forward_features`` (main only,
    aux heads skipped) and ``forward_aux`` (all heads, cropped to the input size)."""

    def all_logits(self, x: Tensor, with_aux: bool = True) -> List[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        return self.all_logits(x, with_aux=False)[0]

    def forward_aux(self, x: Tensor) -> List[Tensor]:
        """All heads' logits (main first), each (b, num_classes, h, w) for an input of any h, w."""
        from grainseg.models.base import pad_to_multiple  # models sit above layers: import at call time

        x = self.adapt_channels(x)
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        h, w = x.shape[-2:]
        return [o[..., :h, :w] for o in self.all_logits(pad_to_multiple(x, self.size_divisor))]
