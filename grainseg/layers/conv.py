"""Convolution building blocks shared by the CNN baselines (U-Net, U-Net++, SegNet, ...)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn


class ConvBNAct(nn.Sequential):
    """``k x k`` convolution (no bias) -> BatchNorm -> ReLU (``act=False`` drops the ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        padding = dilation * (kernel_size // 2)
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """Two 3x3 ConvBNAct layers: the classic U-Net stage."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: Optional[int] = None) -> None:
        mid = mid_channels or out_channels
        super().__init__(ConvBNAct(in_channels, mid), ConvBNAct(mid, out_channels))


class ConvStack(nn.Sequential):
    """``num_convs`` 3x3 ConvBNAct layers, the first mapping ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int) -> None:
        super().__init__(*[ConvBNAct(in_channels if i == 0 else out_channels, out_channels) for i in range(num_convs)])


class UpConv(nn.Sequential):
    """x2 upsampling (bilinear) followed by a 3x3 ConvBNAct (the attention-U-Net "up_conv")."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), ConvBNAct(in_channels, out_channels))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (b, c, h, w) tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
