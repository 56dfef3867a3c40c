"""SA2-Net (Fiaz et al., BMVC 2023): scale-aware attention network for microscopic images (Dice 90.9).

Our reading of the architecture (written from the paper and the authors' public code):

* a U-Net style encoder (one conv, then four max-pool + double-conv stages: base, 2x, 4x, 8x, 8x);
* **scale-aware attention (SA2)** on the four skips: each skip is projected to ``base`` channels, refined by a
  mixed-scale feed-forward block (3x3 and 5x5 depthwise branches gating each other), all four are resized to
  the stride-4 grid, and a fusion conv predicts a query map plus one attention map per scale.  The scale
  maps are normalised with a softmax *across the four scales* (each pixel chooses which scale to trust);
  each level is re-weighted, resized back, added to its input and projected to its original width;
* **adaptive up-attention** in the decoder: the upsampled decoder signal, after a large-kernel (11x11)
  depthwise conv, gates the skip's 5x5 depthwise features; the gated skip (plus residual) feeds the stage;
* deep supervision: the main head plus three auxiliary heads on the coarser decoder stages
  (``forward`` returns the main logits; ``forward_aux`` returns all four, main first).
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_positive_int
from ..layers.conv import ConvBNAct, ConvStack, LayerNorm2d
from .deep_supervision import DeepSupervisionMixin
from .base import SegmentationModel
from .registry import register_model

__all__ = ["SA2Net", "ScaleAwareAttention", "AdaptiveUpAttention"]


class _MixedScaleFFN(nn.Module):
    """1x1 expand, 3x3 and 5x5 depthwise branches gating each other (sigmoid), 1x1 project, residual."""

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, 2 * hidden, 1)
        self.dw3 = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.dw5 = nn.Conv2d(2 * hidden, 2 * hidden, 5, padding=2, groups=2 * hidden)
        self.project = nn.Conv2d(2 * hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x)
        a3, b3 = F.relu(self.dw3(y)).chunk(2, dim=1)
        a5, b5 = F.relu(self.dw5(y)).chunk(2, dim=1)
        return x + self.project(torch.cat([a3 * torch.sigmoid(a5), b3 * torch.sigmoid(b5)], dim=1))


class _ConvMLP(nn.Module):
    """LayerNorm, depthwise 3x3 positional term, 1x1 MLP (x mlp_ratio), residual."""

    def __init__(self, channels: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.pos = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.fc1 = nn.Conv2d(channels, channels * mlp_ratio, 1)
        self.fc2 = nn.Conv2d(channels * mlp_ratio, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x)
        y = y + F.gelu(self.pos(y))
        return x + self.fc2(F.gelu(self.fc1(y)))


class ScaleAwareAttention(nn.Module):
    """SA2 module over four skips (finest first): cross-scale fusion on the third level's grid, a shared
    query, per-scale attention normalised across scales, residual back to each level's own grid and width."""

    def __init__(self, channels: List[int], width: int) -> None:
        super().__init__()
        n = len(channels)
        self.n = n
        self.side = nn.ModuleList(nn.Conv2d(c, width, 3, padding=1) for c in channels)
        self.ffn = nn.ModuleList(_MixedScaleFFN(width) for _ in channels)
        self.fuse_norm = nn.BatchNorm2d(n * width)
        self.fuse = nn.Conv2d(n * width, width + n, 3, padding=1)
        self.query = nn.Conv2d(width, width, 5, padding=2, groups=width)
        self.mlp = nn.ModuleList(_ConvMLP(width) for _ in channels)
        self.out = nn.ModuleList(nn.Conv2d(width, c, 3, padding=1) for c in channels)

    def forward(self, feats: List[Tensor]) -> List[Tensor]:
        side = [conv(f) for conv, f in zip(self.side, feats)]
        size = side[min(2, self.n - 1)].shape[-2:]
        mixed = [F.interpolate(ffn(s), size=size, mode="bilinear", align_corners=False) for ffn, s in zip(self.ffn, side)]
        fused = F.gelu(self.fuse(self.fuse_norm(torch.cat(mixed, dim=1))))
        q, scale_logits = torch.split(fused, [fused.shape[1] - self.n, self.n], dim=1)
        q = F.gelu(self.query(q))
        scale_att = torch.softmax(scale_logits, dim=1)
        outs = []
        for i, (m, s) in enumerate(zip(mixed, side)):
            y = m * scale_att[:, i:i + 1] * q
            y = F.interpolate(y, size=s.shape[-2:], mode="bilinear", align_corners=False) + s
            outs.append(self.out[i](self.mlp[i](y)))
        return outs


class AdaptiveUpAttention(nn.Module):
    """Gate the skip ``x`` with the upsampled decoder signal ``g`` (same width): large-kernel depthwise on
    ``g``, 5x5 depthwise on ``x``, a sigmoid map from both; output proj(gated) + x."""

    def __init__(self, channels: int, kernel_size: int = 11) -> None:
        super().__init__()
        self.g_branch = nn.Sequential(LayerNorm2d(channels), nn.Conv2d(channels, channels, 1), nn.GELU(),
                                      nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels))
        self.x_branch = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.psi = nn.Sequential(nn.Conv2d(2 * channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.proj = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        xf = self.x_branch(x)
        gate = self.psi(F.gelu(torch.cat([self.g_branch(g), xf], dim=1)))
        return self.proj(gate * xf) + x


@register_model("sa2net", paper_name="SA2-Net", paper_dice=90.9, tiny=dict(base_channels=4))
class SA2Net(DeepSupervisionMixin, SegmentationModel):
    """SA2-Net: U-Net encoder, scale-aware attention on the skips, adaptive up-attention decoder and deep
    supervision (``forward_aux``)."""

    size_divisor = 16
    #: the encoder (``--freeze-encoder-epochs``): the U-Net down path
    encoder_modules = ('inc', 'downs')
    #: auxiliary (deep-supervision) heads: only forward_aux uses them
    no_grad_params = ("heads.1.*", "heads.2.*", "heads.3.*")

    def __init__(self, in_chans: int = 3, num_classes: int = 1, base_channels: int = 64,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        c = check_positive_int(base_channels, "base_channels")
        chs = [c, 2 * c, 4 * c, 8 * c]
        self.inc = ConvBNAct(in_chans, c)
        self.downs = nn.ModuleList(ConvStack(a, b, 2) for a, b in zip(chs, chs[1:] + [8 * c]))
        self.bottom = nn.Conv2d(8 * c, 8 * c, 3, padding=1)
        self.sa2 = ScaleAwareAttention(chs, c)
        # decoder stage i: up-attention at width chs[i] (decoder input and skip share it), then 2 convs
        outs = [c, c, 2 * c, 4 * c]
        self.up_att = nn.ModuleList(AdaptiveUpAttention(chs[i]) for i in reversed(range(4)))
        self.dec = nn.ModuleList(ConvStack(chs[i], outs[i], 2) for i in reversed(range(4)))
        self.heads = nn.ModuleList(nn.Conv2d(outs[i], num_classes, 1) for i in range(4))  # main first

    def all_logits(self, x: Tensor, with_aux: bool = True) -> List[Tensor]:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = self.bottom(skips.pop())
        skips = self.sa2(skips)
        stages = []
        for att, dec in zip(self.up_att, self.dec):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = dec(att(y, skips.pop()))
            stages.append(y)
        size = x.shape[-2:]
        logits = [self.heads[0](stages[-1])]
        if not with_aux:
            return logits
        for head, s in zip(self.heads[1:], reversed(stages[:-1])):
            logits.append(F.interpolate(head(s), size=size, mode="bilinear", align_corners=False))
        return logits
