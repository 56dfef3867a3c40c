"""A tiny stand-in segmentation net with fixed weights and a small receptive field (for tiling tests).

It thresholds a 5x5 local mean of the (min-max normalised) grey level: bright grain interiors give
high probability, dark boundaries low, so its masks look like grains and its output at a pixel depends
only on a 5x5 neighbourhood (tile seams can then only show within a few pixels of a tile edge).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class StandInNet(nn.Module):
    """Logits = gain * (5x5 mean of the grey level - level); exposes ``preprocessing`` and ``in_chans``."""

    def __init__(self, preprocessing: Optional[dict] = None, in_chans: int = 3, level: float = 0.4, gain: float = 12.0):
        super().__init__()
        self.in_chans = in_chans
        self.preprocessing = preprocessing or {"normalize": "minmax", "input_size": [64, 64], "train_image_size": None}
        self.weight = nn.Parameter(torch.full((1, in_chans, 5, 5), 1.0 / (25 * in_chans)), requires_grad=False)
        self.level, self.gain = level, gain
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.gain * (F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.weight) - self.level)
