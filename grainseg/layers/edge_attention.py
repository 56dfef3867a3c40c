"""Edge-Aware Attention (the paper's VM-UNet-V2 addition): a Sobel-edge gate on a feature map.

For a feature map x (b, c, h, w): fixed depthwise Sobel filters give gx, gy per channel; the edge
magnitude sqrt(gx^2 + gy^2 + 1e-6) goes through a learned 1x1 convolution and a sigmoid, and the gate
multiplies x.  Grain boundaries are thin, high-gradient lines, so the gate lets the decoder see where they
are in every encoder feature.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_positive_int

__all__ = ["EdgeAwareAttention", "SOBEL_X", "SOBEL_Y"]

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


class EdgeAwareAttention(nn.Module):
    """Gate ``x`` by sigmoid(conv1x1(|Sobel(x)|)): fixed depthwise Sobel x/y, learned 1x1 conv, sigmoid.

    Args:
        channels: channels of the feature map it gates.
        eps: added under the square root so the magnitude's gradient stays finite on flat regions.

    ``edge_magnitude(x)`` returns the per-channel magnitude and ``gate(x)`` the (0, 1) gate, for inspection.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.eps = float(eps)
        kernel = torch.tensor([SOBEL_X, SOBEL_Y]).unsqueeze(1)  # (2, 1, 3, 3)
        # Buffers (not parameters): the Sobel filters are fixed; persistent=False keeps them out of checkpoints.
        self.register_buffer("sobel", kernel.repeat(channels, 1, 1, 1), persistent=False)
        self.proj = nn.Conv2d(channels, channels, 1)

    def edge_magnitude(self, x: Tensor) -> Tensor:
        """sqrt(gx^2 + gy^2 + eps) per channel, same shape as ``x`` (replicate padding at the borders)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must be (batch, {self.channels}, height, width), got shape {tuple(x.shape)}")
        grad = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.sobel.to(x.dtype), groups=self.channels)
        gx, gy = grad[:, 0::2], grad[:, 1::2]
        return torch.sqrt(gx * gx + gy * gy + self.eps)

    def gate(self, x: Tensor) -> Tensor:
        """The sigmoid gate in (0, 1), same shape as ``x``."""
        return torch.sigmoid(self.proj(self.edge_magnitude(x)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
