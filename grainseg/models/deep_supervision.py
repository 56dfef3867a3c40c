"""Models with auxiliary heads: :class:`DeepSupervisionMixin`.

``vmunet_v2``, ``vmunet_v2_edge`` and ``sa2net`` return only the main logits from ``forward`` (so the
trainer and tester treat them like every other model) and expose all heads via ``model.forward_aux(x)``,
for :func:`grainseg.layers.deep_supervision.deep_supervision_loss`.
"""
from __future__ import annotations

from typing import List

from torch import Tensor

__all__ = ["DeepSupervisionMixin"]


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
        x = self.adapt_channels(x)
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        return self.pad_run_crop(x, self.all_logits)
