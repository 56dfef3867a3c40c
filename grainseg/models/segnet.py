"""SegNet (Badrinarayanan et al., 2017): VGG-16 encoder, decoder upsampling with the pooling indices.

The paper's weakest baseline (Dice 83.9): without skip features the decoder must rebuild thin grain
boundaries from the 1/32 bottleneck and the max-pooling positions alone.
"""
from __future__ import annotations

from typing import List, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_positive_int
from ..layers.conv import ConvStack
from .base import SegmentationModel
from .registry import register_model

__all__ = ["SegNet"]

#: VGG-16 stages: (channel multiple of base_channels, number of 3x3 convs)
_VGG16 = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))


@register_model("segnet", paper_name="SegNet", paper_dice=83.9, tiny=dict(base_channels=4))
class SegNet(SegmentationModel):
    """SegNet: five VGG-16-BN stages with 2x2 max pooling (indices kept), a mirrored decoder that
    max-unpools with those indices, and a 3x3 classifier."""

    size_divisor = 32
    #: the encoder (``--freeze-encoder-epochs``): the VGG-style down path
    encoder_modules = ('enc',)

    def __init__(self, in_chans: int = 3, num_classes: int = 1, base_channels: int = 64,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        c = check_positive_int(base_channels, "base_channels")
        chs = [m * c for m, _ in _VGG16]
        self.enc = nn.ModuleList()
        prev = in_chans
        for ch, (_, n) in zip(chs, _VGG16):
            self.enc.append(ConvStack(prev, ch, n))
            prev = ch
        # Decoder stage i mirrors encoder stage i: n convs at its width, the last one mapping to the
        # width of the stage above (the first stage keeps its width; the classifier follows).
        self.dec = nn.ModuleList()
        for i in reversed(range(len(_VGG16))):
            n = _VGG16[i][1]
            out = chs[i - 1] if i > 0 else chs[0]
            self.dec.append(nn.Sequential(ConvStack(chs[i], chs[i], n - 1), ConvStack(chs[i], out, 1)))
        self.head = nn.Conv2d(chs[0], num_classes, 3, padding=1)
        for m in self.modules():  # He init, as VGG / SegNet: keeps the signal alive through 26 conv layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        indices: List[Tensor] = []
        for stage in self.enc:
            x, idx = F.max_pool2d(stage(x), 2, 2, return_indices=True)
            indices.append(idx)
        for stage in self.dec:
            x = stage(F.max_unpool2d(x, indices.pop(), 2, 2))
        return self.head(x)
