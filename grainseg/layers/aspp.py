"""EnhancedASPP: the atrous spatial pyramid pooling head of VM-UNet-ASPP (SiLU variant)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dilated_conv import dilated_conv2d

__all__ = ["EnhancedASPP"]


class EnhancedASPP(nn.Module):
    """Multi-rate context on a (b, in, h, w) map -> (b, out, h, w).

    Branches: 1x1 conv-BN-SiLU (``conv1``/``bn1``); one dilated 3x3 conv-BN-SiLU per rate
    (``convs``/``bns``); global average pool -> 1x1 conv (``conv_pool``) -> bilinear upsample, without
    BN or activation.  The branches are concatenated in that order and fused by a 1x1 conv-BN-SiLU
    (``conv_out``/``bn_out``).  No conv has a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (3, 6, 9, 12, 15)) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        rates = list(rates)
        if not rates or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates):
            raise ValueError(f"rates must be a non-empty list of positive ints, got {rates!r}")
        self.rates = rates
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=r, dilation=r, bias=False) for r in rates
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in rates)
        self.conv_pool = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv_out = nn.Conv2d(out_channels * (len(rates) + 2), out_channels, 1, bias=False)
        self.bn_out = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        x_conv = x
        if (x.device.type == "cpu" and (x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu"))
                and torch.is_grad_enabled() and (x.requires_grad or any(c.weight.requires_grad for c in self.convs))):
            # oneDNN in torch's CPU build (2.13, AVX-512) segfaults in the bfloat16 weight gradient of a
            # dilated conv on a channels-last input (VM-UNet hands this head a permuted view); fp32 is fine,
            # and so is inference, which computes no gradient (and saves this copy and the branch
            # outputs' copies back to channels-last below)
            x_conv = x.contiguous()
        # Computed channels-last throughout, with the 1x1 convs as matrix products over the channels and
        # conv_out as the sum of its per-branch blocks (no concatenation); the pooled branch, constant over
        # the map, enters as a broadcast vector.  The same sums as the concatenate-and-convolve form up to
        # rounding, but about twice as fast on the CPU: torch takes its slow unfolding path for a 1x1 conv
        # at batch < 16 on one thread, and the slices of a concatenation's gradient have another layout
        # than the branch outputs, which sends every BN / SiLU backward down a strided path.
        chans = self.conv_out.out_channels
        w_out = self.conv_out.weight.flatten(1).split(self.conv1.out_channels, dim=1)  # per-branch blocks
        x_cl = x.permute(0, 2, 3, 1)
        branch = F.silu(self.bn1(F.linear(x_cl, self.conv1.weight.flatten(1)).permute(0, 3, 1, 2)))
        fused = F.linear(branch.permute(0, 2, 3, 1), w_out[0])
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = dilated_conv2d(x_conv, conv.weight, conv.padding, conv.dilation)  # faster CPU weight gradient
            branch = F.silu(bn(y.contiguous(memory_format=torch.channels_last)))
            fused = fused + F.linear(branch.permute(0, 2, 3, 1), w_out[i + 1])
        pooled = self.conv_pool(F.adaptive_avg_pool2d(x, 1)).flatten(1)  # (b, out)
        fused = fused + F.linear(pooled, w_out[-1]).view(b, 1, 1, chans)
        return F.silu(self.bn_out(fused.permute(0, 3, 1, 2)))
