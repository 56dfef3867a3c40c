"""U-Net (Ronneberger et al., 2015): the paper's plain encoder-decoder baseline (Dice 90.9 in Table I)."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_positive_int
from ..layers.conv import DoubleConv
from .base import SegmentationModel
from .registry import register_model

__all__ = ["UNet"]


@register_model(
    "unet",
    paper_name="U-Net",
    paper_dice=90.9,
    tiny=dict(base_channels=4),
    presets={
        "unet_small": dict(
            base_channels=20,
            description="U-Net at a fifth of the width (3.0 M): the CNN baseline trained beside vmunet_aspp_small "
                        "(docs/results.md)",
            tiny=dict(base_channels=4),
        )
    },
)
class UNet(SegmentationModel):
    """U-Net: four max-pool downsamplings with double 3x3 conv stages, transposed-conv upsampling and
    concatenated skips; channels base, 2x, 4x, 8x, 16x (64 ... 1024 by default)."""

    size_divisor = 16
    #: the encoder (``--freeze-encoder-epochs``): the down path
    encoder_modules = ('inc', 'downs')

    def __init__(self, in_chans: int = 3, num_classes: int = 1, base_channels: int = 64,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        c = check_positive_int(base_channels, "base_channels")
        chs = [c, 2 * c, 4 * c, 8 * c, 16 * c]
        self.inc = DoubleConv(in_chans, chs[0])
        self.downs = nn.ModuleList(DoubleConv(chs[i], chs[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chs[i + 1], chs[i], 2, stride=2) for i in reversed(range(4)))
        self.dec = nn.ModuleList(DoubleConv(2 * chs[i], chs[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(chs[0], num_classes, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        skips: List[Tensor] = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up, dec in zip(self.ups, self.dec):
            y = dec(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)
