"""U-Net++ (Zhou et al., 2018) on a ResNet encoder: nested, densely connected skip pathways.

The paper's U-Net++ baseline (Dice 90.0) used a ResNet-152 encoder (the authors' notebook
``Unet++_resnet152``); the encoder depth is an argument (18/34/50/101/152).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_int_list, check_positive_int
from ..layers.conv import DoubleConv
from ..layers.resnet import ResNetEncoder
from .base import SegmentationModel
from .registry import register_model

__all__ = ["UNetPlusPlus"]


@register_model("unetplusplus", paper_name="U-Net++ (ResNet-152 encoder)", paper_dice=90.0,
                tiny=dict(encoder_depth=18, encoder_width=4, decoder_channels=[16, 8, 8, 4, 4]))
class UNetPlusPlus(SegmentationModel):
    """U-Net++: nodes X[i][j] at encoder level i (stride 2^(i+1)) fuse all earlier nodes of that level
    with the upsampled node X[i+1][j-1]; the last node X[0][4] is upsampled to full resolution.

    ``decoder_channels`` lists the node widths from the deepest level (stride 16) to full resolution,
    as in segmentation_models_pytorch (default 256, 128, 64, 32, 16).
    """

    size_divisor = 32
    #: the encoder (``--freeze-encoder-epochs``): the ResNet backbone
    encoder_modules = ('encoder',)

    def __init__(self, in_chans: int = 3, num_classes: int = 1, encoder_depth: int = 152, encoder_width: int = 64,
                 decoder_channels: Optional[List[int]] = None, preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        dec = check_int_list([256, 128, 64, 32, 16] if decoder_channels is None else decoder_channels,
                             "decoder_channels", 5)
        self.encoder = ResNetEncoder(encoder_depth, in_chans, check_positive_int(encoder_width, "encoder_width"))
        enc = self.encoder.out_channels  # strides 2, 4, 8, 16, 32
        level_ch = [dec[3], dec[2], dec[1], dec[0]]  # node width at levels 0..3 (strides 2..16)
        node_ch: Dict[Tuple[int, int], int] = {(i, 0): enc[i] for i in range(5)}
        self.nodes = nn.ModuleDict()
        for j in range(1, 5):
            for i in range(0, 5 - j):
                cin = sum(node_ch[(i, k)] for k in range(j)) + node_ch[(i + 1, j - 1)]
                node_ch[(i, j)] = level_ch[i]
                self.nodes[f"x{i}_{j}"] = DoubleConv(cin, level_ch[i])
        self.final = DoubleConv(level_ch[0], dec[4])
        self.head = nn.Conv2d(dec[4], num_classes, 3, padding=1)

    def forward_features(self, x: Tensor) -> Tensor:
        feats = self.encoder(x)
        grid: Dict[Tuple[int, int], Tensor] = {(i, 0): f for i, f in enumerate(feats)}
        for j in range(1, 5):
            for i in range(0, 5 - j):
                up = F.interpolate(grid[(i + 1, j - 1)], scale_factor=2.0, mode="nearest")
                grid[(i, j)] = self.nodes[f"x{i}_{j}"](torch.cat([grid[(i, k)] for k in range(j)] + [up], dim=1))
        y = F.interpolate(grid[(0, 4)], scale_factor=2.0, mode="nearest")
        return self.head(self.final(y))
