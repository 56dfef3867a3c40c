"""DeepLabV3+ (Chen et al., 2018): ResNet encoder at output stride 16, ASPP, and a light decoder that
refines the upsampled context with stride-4 low-level features (Dice 89.65 in the authors' plot)."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_choice, check_int_list, check_positive_int
from ..layers.conv import ConvBNAct
from ..layers.resnet import ResNetEncoder
from .base import SegmentationModel
from .registry import register_model

__all__ = ["DeepLabV3Plus", "ASPP"]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, one 3x3 branch per dilation rate and an image-pooling
    branch, concatenated and projected (DeepLabV3).  The zoo's EnhancedASPP (VM-UNet-ASPP) lives in
    grainseg.layers.aspp; this is the plain DeepLab module."""

    def __init__(self, in_channels: int, out_channels: int, rates: List[int], dropout: float = 0.1) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNAct(in_channels, out_channels, 1)] +
                                      [ConvBNAct(in_channels, out_channels, 3, dilation=r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                  nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNAct(out_channels * (len(rates) + 2), out_channels, 1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, dim=1))


@register_model("deeplabv3plus", paper_name="DeepLabV3+", paper_dice=89.65,
                tiny=dict(encoder_depth=18, encoder_width=4, aspp_channels=8, low_level_channels=4))
class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+: ResNet (default ResNet-50) at output stride 16 (or 8), ASPP with rates 6/12/18
    (doubled at output stride 8), decoder fusing 48 low-level channels at stride 4, x4 bilinear output."""

    size_divisor = 16
    #: the encoder (``--freeze-encoder-epochs``): the ResNet backbone
    encoder_modules = ('encoder',)

    def __init__(self, in_chans: int = 3, num_classes: int = 1, encoder_depth: int = 50, encoder_width: int = 64,
                 output_stride: int = 16, aspp_rates: Optional[List[int]] = None, aspp_channels: int = 256,
                 low_level_channels: int = 48, preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        check_choice(output_stride, "output_stride", (8, 16))
        if aspp_rates is None:
            aspp_rates = [6, 12, 18] if output_stride == 16 else [12, 24, 36]
        if not isinstance(aspp_rates, (list, tuple)) or not aspp_rates:
            raise ValueError(f"aspp_rates must be a non-empty list of positive ints, got {aspp_rates!r}")
        rates = check_int_list(aspp_rates, "aspp_rates", len(aspp_rates))
        c = check_positive_int(aspp_channels, "aspp_channels")
        low = check_positive_int(low_level_channels, "low_level_channels")
        self.encoder = ResNetEncoder(encoder_depth, in_chans, check_positive_int(encoder_width, "encoder_width"),
                                     output_stride=output_stride)
        enc = self.encoder.out_channels
        self.aspp = ASPP(enc[4], c, rates)
        self.low_proj = ConvBNAct(enc[1], low, 1)
        self.decoder = nn.Sequential(ConvBNAct(c + low, c), ConvBNAct(c, c))
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        feats = self.encoder(x)
        low = self.low_proj(feats[1])
        ctx = F.interpolate(self.aspp(feats[4]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(self.decoder(torch.cat([ctx, low], dim=1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
