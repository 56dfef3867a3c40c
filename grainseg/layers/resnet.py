"""ResNet-18/34/50/101/152 encoders (He et al., 2016), written here so the zoo needs no torchvision / timm.

Module names follow the usual ResNet layout (``conv1``, ``bn1``, ``layer1`` ... ``layer4``; blocks with
``conv1``/``bn1``/..., ``downsample.0``/``downsample.1``), so an ImageNet ResNet state dict of that layout
loads with ``load_state_dict(sd, strict=False)`` (only its ``fc.*`` keys are unexpected).
"""
from __future__ import annotations

from typing import Dict, List, Tuple, Type, Union

from torch import Tensor, nn

from ._args import check_choice, check_positive_int

__all__ = ["BasicBlock", "Bottleneck", "ResNetEncoder", "RESNET_DEPTHS"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided / dilated) -> 1x1 expand (x4), with a projection shortcut when needed."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> Union[nn.Sequential, None]:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


#: depth -> (block type, blocks per stage)
RESNET_DEPTHS: Dict[int, Tuple[Type[nn.Module], Tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNetEncoder(nn.Module):
    """ResNet trunk returning the five feature maps at strides 2, 4, 8, 16, 32 (no pooling head / fc).

    ``base_width`` scales every stage (64 is the standard ResNet; small values make test-size models).
    ``output_stride`` 16 or 8 replaces the last stride(s) by dilation (DeepLab style); the feature list
    then has strides 2, 4, 8, 16, 16 (or 2, 4, 8, 8, 8).  ``out_channels`` lists the five channel counts.
    """

    def __init__(self, depth: int = 34, in_chans: int = 3, base_width: int = 64, output_stride: int = 32) -> None:
        super().__init__()
        check_choice(depth, "depth", sorted(RESNET_DEPTHS))
        check_positive_int(in_chans, "in_chans")
        check_positive_int(base_width, "base_width")
        check_choice(output_stride, "output_stride", (8, 16, 32))
        block, counts = RESNET_DEPTHS[depth]
        self.depth = depth
        self.conv1 = nn.Conv2d(in_chans, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        strides = {32: (1, 2, 2, 2), 16: (1, 2, 2, 1), 8: (1, 2, 1, 1)}[output_stride]
        dilations = {32: (1, 1, 1, 1), 16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}[output_stride]
        channels = base_width
        stages: List[nn.Sequential] = []
        for i, (n, s, d) in enumerate(zip(counts, strides, dilations)):
            width = base_width * 2**i
            blocks = [block(channels, width, s, d)]
            channels = width * block.expansion
            blocks += [block(channels, width, 1, d) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels: List[int] = [base_width] + [base_width * 2**i * block.expansion for i in range(4)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> List[Tensor]:
        """Features [stride 2 (stem), stride 4, 8, 16, 32] for a (b, in_chans, h, w) input."""
        x0 = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]
