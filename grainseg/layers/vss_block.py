"""VSS blocks and stages of VM-UNet: ``x + DropPath(SS2D(LayerNorm(x)))`` on channel-last maps."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from torch import Tensor, nn

from .ss2d import SS2D

__all__ = ["DropPath", "VSSBlock", "VSSLayer", "VSSLayerUp"]


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``drop_prob`` in training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class VSSBlock(nn.Module):
    """One VSS block: ``x + DropPath(SS2D(LN(x)))`` on (b, h, w, dim) maps (names: ln_1, self_attention)."""

    def __init__(
        self,
        hidden_dim: int,
        drop_path: float = 0.0,
        d_state: int = 16,
        d_conv: int = 3,
        expand: Union[int, float] = 2,
        attn_drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim)
        self.self_attention = SS2D(hidden_dim, d_state=d_state, d_conv=d_conv, expand=expand, dropout=attn_drop_rate)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))


def _blocks(dim: int, depth: int, drop_path: Sequence[float], **kw) -> nn.ModuleList:
    if len(drop_path) != depth:
        raise ValueError(f"drop_path needs one rate per block ({depth}), got {len(drop_path)}")
    return nn.ModuleList(VSSBlock(dim, drop_path=float(dp), **kw) for dp in drop_path)


class VSSLayer(nn.Module):
    """Encoder stage: ``depth`` VSS blocks, then an optional downsampling module (``downsample``)."""

    def __init__(self, dim: int, depth: int, drop_path: Sequence[float], downsample: Optional[nn.Module] = None,
                 d_state: int = 16, d_conv: int = 3, expand: Union[int, float] = 2) -> None:
        super().__init__()
        self.blocks = _blocks(dim, depth, drop_path, d_state=d_state, d_conv=d_conv, expand=expand)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class VSSLayerUp(nn.Module):
    """Decoder stage: an optional upsampling module (``upsample``), then ``depth`` VSS blocks."""

    def __init__(self, dim: int, depth: int, drop_path: Sequence[float], upsample: Optional[nn.Module] = None,
                 d_state: int = 16, d_conv: int = 3, expand: Union[int, float] = 2) -> None:
        super().__init__()
        self.upsample = upsample
        self.blocks = _blocks(dim, depth, drop_path, d_state=d_state, d_conv=d_conv, expand=expand)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x
