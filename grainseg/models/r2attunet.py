"""R2AttU-Net (Alom et al. 2018 + Oktay et al. 2018): recurrent residual conv units with attention-gated
skips (Dice 90.2 in the paper)."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_positive_int
from ..layers.attention import AttentionGate
from ..layers.conv import ConvBNAct, UpConv
from .base import SegmentationModel
from .registry import register_model

__all__ = ["R2AttUNet", "RecurrentConv", "RRCNNBlock"]


class RecurrentConv(nn.Module):
    """A 3x3 ConvBNAct applied ``t + 1`` times with shared weights, each time on ``x + previous output``."""

    def __init__(self, channels: int, t: int = 2) -> None:
        super().__init__()
        self.t = t
        self.conv = ConvBNAct(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        for _ in range(self.t):
            y = self.conv(x + y)
        return y


class RRCNNBlock(nn.Module):
    """Recurrent residual block: 1x1 projection, two recurrent convs, residual sum."""

    def __init__(self, in_channels: int, out_channels: int, t: int = 2) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        self.body = nn.Sequential(RecurrentConv(out_channels, t), RecurrentConv(out_channels, t))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return x + self.body(x)


@register_model("r2attunet", paper_name="R2AttU-Net", paper_dice=90.2, tiny=dict(base_channels=4, t=1))
class R2AttUNet(SegmentationModel):
    """R2AttU-Net: recurrent residual encoder/decoder blocks (recurrence ``t``), attention gates on the four
    skips, upsample + 3x3 conv in the decoder; channels base x (1, 2, 4, 8, 16)."""

    size_divisor = 16
    #: the encoder (``--freeze-encoder-epochs``): the recurrent residual down path
    encoder_modules = ('enc',)

    def __init__(self, in_chans: int = 3, num_classes: int = 1, base_channels: int = 64, t: int = 2,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        c = check_positive_int(base_channels, "base_channels")
        t = check_positive_int(t, "t")
        chs = [c, 2 * c, 4 * c, 8 * c, 16 * c]
        self.enc = nn.ModuleList(RRCNNBlock(in_chans if i == 0 else chs[i - 1], chs[i], t) for i in range(5))
        self.up = nn.ModuleList(UpConv(chs[i + 1], chs[i]) for i in reversed(range(4)))
        self.att = nn.ModuleList(AttentionGate(chs[i], chs[i], max(chs[i] // 2, 1)) for i in reversed(range(4)))
        self.dec = nn.ModuleList(RRCNNBlock(2 * chs[i], chs[i], t) for i in reversed(range(4)))
        self.head = nn.Conv2d(chs[0], num_classes, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        skips: List[Tensor] = [self.enc[0](x)]
        for block in self.enc[1:]:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up, att, dec in zip(self.up, self.att, self.dec):
            y = up(y)
            y = dec(torch.cat([att(y, skips.pop()), y], dim=1))
        return self.head(y)
