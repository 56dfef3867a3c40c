"""VM-UNet-V2 (Zhang et al., 2024) and the paper's VM-UNet-V2 + Edge-Aware Attention.

* Encoder: 4x4 patch embedding and four VSS stages (the models helper's VSSLayer / PatchMerging) giving
  features at strides 4, 8, 16, 32 with widths C, 2C, 4C, 8C.
* Each feature: CBAM channel then spatial attention, then a 1x1 conv to ``mid_channels``.
* SDI (semantics and detail infusion): for every level i, all four features are resized to level i's grid
  (average pooling for finer ones, bilinear upsampling for coarser ones), each passes its own 3x3 conv and
  the four results are multiplied element-wise (Hadamard product).
* Decoder: from the coarsest level, a 4x4 stride-2 transposed conv upsamples and the next SDI output is
  added; every level has a 1x1 segmentation head (deep supervision).  The stride-4 head, upsampled x4, is
  the main output.

``forward`` returns the main logits only; ``forward_aux(x)`` returns all four heads' logits at the input
size (main first) for :func:`grainseg.layers.deep_supervision.deep_supervision_loss`.

``vmunet_v2_edge`` (the paper's variant, Dice 91.73) multiplies every encoder feature by an
:class:`~grainseg.layers.edge_attention.EdgeAwareAttention` gate before the attention / SDI path.
"""
from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import PatchEmbed, PatchMerging, VSSLayer
from ..layers._args import check_positive_int
from ..layers.attention import ChannelAttention, SpatialAttention
from ..layers.conv import ConvBNAct
from ..layers.edge_attention import EdgeAwareAttention
from .deep_supervision import DeepSupervisionMixin
from .base import SegmentationModel
from .registry import register_model
from .vmunet import NUM_STAGES, PATCH_SIZE, _depths, _linspace, expand_dims

__all__ = ["VMUNetV2", "VMUNetV2Edge", "SDI"]

_TINY = dict(dims=8, depths=[1, 1, 1, 1], d_state=4, mid_channels=4)


class SDI(nn.Module):
    """Semantics and detail infusion for one target level: resize, per-source 3x3 conv, Hadamard product."""

    def __init__(self, channels: int, num_sources: int = NUM_STAGES) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_sources))

    def forward(self, feats: List[Tensor], size: torch.Size) -> Tensor:
        out: Optional[Tensor] = None
        for conv, f in zip(self.convs, feats):
            if f.shape[-2] > size[0]:
                f = F.adaptive_avg_pool2d(f, size)
            elif f.shape[-2] < size[0]:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=True)
            f = conv(f)
            out = f if out is None else out * f
        return out


@register_model("vmunet_v2", paper_name="VM-UNet-V2", paper_dice=90.5, tiny=dict(_TINY))
class VMUNetV2(DeepSupervisionMixin, SegmentationModel):
    """VM-UNet-V2: VSS encoder, CBAM + SDI skips, transposed-conv decoder with deep supervision."""

    size_divisor = PATCH_SIZE * 2 ** (NUM_STAGES - 1)
    #: the encoder (``--freeze-encoder-epochs``): patch embedding, VSS stages and patch merging
    encoder_modules = ('patch_embed', 'stages', 'downsamples')
    edge_attention = False
    #: auxiliary (deep-supervision) heads: only forward_aux uses them
    no_grad_params = ("heads.1.*", "heads.2.*", "heads.3.*")

    def __init__(self, in_chans: int = 3, num_classes: int = 1, dims: Union[int, List[int]] = 96,
                 depths: List[int] = (2, 2, 9, 2), mid_channels: int = 48, d_state: int = 16, d_conv: int = 3,
                 expand: Union[int, float] = 2, drop_path_rate: float = 0.2,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        self.dims = expand_dims(dims)
        self.depths = _depths(depths, "depths")
        mid = check_positive_int(mid_channels, "mid_channels")
        if not isinstance(drop_path_rate, (int, float)) or isinstance(drop_path_rate, bool) or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        ssm = dict(d_state=d_state, d_conv=d_conv, expand=expand)
        self.patch_embed = PatchEmbed(in_chans, self.dims[0], PATCH_SIZE)
        dpr = _linspace(drop_path_rate, sum(self.depths))
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for i in range(NUM_STAGES):
            start = sum(self.depths[:i])
            self.stages.append(VSSLayer(self.dims[i], self.depths[i], dpr[start:start + self.depths[i]], None, **ssm))
            if i < NUM_STAGES - 1:
                self.downsamples.append(PatchMerging(self.dims[i]))
        self.edge = nn.ModuleList(EdgeAwareAttention(d) for d in self.dims) if self.edge_attention else None
        self.channel_att = nn.ModuleList(ChannelAttention(d) for d in self.dims)
        self.spatial_att = nn.ModuleList(SpatialAttention() for _ in self.dims)
        self.translate = nn.ModuleList(ConvBNAct(d, mid, 1) for d in self.dims)
        self.sdi = nn.ModuleList(SDI(mid) for _ in self.dims)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(mid, mid, 4, stride=2, padding=1) for _ in range(NUM_STAGES - 1))
        self.heads = nn.ModuleList(nn.Conv2d(mid, num_classes, 1) for _ in self.dims)  # finest (main) first

    def encode(self, x: Tensor) -> List[Tensor]:
        """Channel-first encoder features at strides 4, 8, 16, 32."""
        y = self.patch_embed(x)
        feats = []
        for i, stage in enumerate(self.stages):
            y = stage(y)
            feats.append(y.permute(0, 3, 1, 2))
            if i < NUM_STAGES - 1:
                y = self.downsamples[i](y)
        return feats

    def all_logits(self, x: Tensor, with_aux: bool = True) -> List[Tensor]:
        feats = self.encode(x)
        if self.edge is not None:
            feats = [gate(f) for gate, f in zip(self.edge, feats)]
        feats = [t(sa(ca(f))) for f, ca, sa, t in zip(feats, self.channel_att, self.spatial_att, self.translate)]
        fused = [sdi(feats, f.shape[-2:]) for sdi, f in zip(self.sdi, feats)]
        y = fused[-1]
        aux = [self.heads[-1](y)] if with_aux else []  # coarsest first
        for i in reversed(range(NUM_STAGES - 1)):
            y = self.ups[i](y) + fused[i]
            if with_aux and i > 0:
                aux.append(self.heads[i](y))
        size = x.shape[-2:]
        outs = [self.heads[0](y)] + aux[::-1]
        return [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs]


@register_model("vmunet_v2_edge", paper_name="VM-UNet-V2 + Edge-Aware Attention", paper_dice=91.73, tiny=dict(_TINY))
class VMUNetV2Edge(VMUNetV2):
    """VM-UNet-V2 with the paper's Edge-Aware Attention gate on every encoder feature before SDI."""

    edge_attention = True

    def __init__(self, in_chans: int = 3, num_classes: int = 1, dims: Union[int, List[int]] = 96,
                 depths: List[int] = (2, 2, 9, 2), mid_channels: int = 48, d_state: int = 16, d_conv: int = 3,
                 expand: Union[int, float] = 2, drop_path_rate: float = 0.2,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, dims=dims, depths=depths,
                         mid_channels=mid_channels, d_state=d_state, d_conv=d_conv, expand=expand,
                         drop_path_rate=drop_path_rate, preprocessing=preprocessing)
