"""UCTransNet (Wang et al., AAAI 2022): U-Net whose skips pass through a Channel-wise Cross-fusion
Transformer (CCT) and are merged in the decoder by Channel-wise Cross Attention (CCA) (Dice 91.05).

Each of the four skip maps is cut into patches (sizes 16, 8, 4, 2 so all four give the same token grid,
H/16 x W/16); the CCT attends across *channels*: each level's channels (queries) attend to the
concatenated channels of all levels (keys / values).  Learned position embeddings are defined for
``img_size`` and resized bicubically for other sizes, so any input size (multiple of 16 after padding) works.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers._args import check_positive_int, check_probability
from ..layers.conv import ConvBNAct, ConvStack
from .base import SegmentationModel
from .registry import register_model

__all__ = ["UCTransNet", "ChannelCrossFusionTransformer", "ChannelCrossAttention"]


class _PatchTokens(nn.Module):
    """Non-overlapping ``patch`` x ``patch`` conv embedding with a learned, resizable position embedding."""

    def __init__(self, channels: int, patch: int, grid: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, channels, grid, grid))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        """Tokens (b, n, c) and their grid (gh, gw)."""
        y = self.proj(x)
        pos = self.pos if self.pos.shape[-2:] == y.shape[-2:] else F.interpolate(
            self.pos, size=y.shape[-2:], mode="bicubic", align_corners=False)
        return self.drop((y + pos).flatten(2).transpose(1, 2)), (y.shape[-2], y.shape[-1])


class _ChannelAttentionLayer(nn.Module):
    """Multi-head channel-wise cross attention: per-level queries over the concatenated channels."""

    def __init__(self, channels: List[int], num_heads: int, dropout: float) -> None:
        super().__init__()
        kv = sum(channels)
        self.heads, self.kv = num_heads, kv
        self.q = nn.ModuleList(nn.Linear(c, c * num_heads, bias=False) for c in channels)
        self.k = nn.Linear(kv, kv * num_heads, bias=False)
        self.v = nn.Linear(kv, kv * num_heads, bias=False)
        self.score_norm = nn.InstanceNorm2d(num_heads)
        self.out = nn.ModuleList(nn.Linear(c, c, bias=False) for c in channels)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, tokens: List[Tensor], all_tokens: Tensor) -> List[Tensor]:
        b, n, _ = all_tokens.shape
        k = self.k(all_tokens).view(b, n, self.heads, self.kv).permute(0, 2, 1, 3)  # (b, h, n, kv)
        v = self.v(all_tokens).view(b, n, self.heads, self.kv).permute(0, 2, 1, 3)
        outs = []
        for t, q_lin, out_lin in zip(tokens, self.q, self.out):
            c = t.shape[-1]
            q = q_lin(t).view(b, n, self.heads, c).permute(0, 2, 3, 1)  # (b, h, c, n)
            scores = self.score_norm(q @ k / math.sqrt(self.kv))  # (b, h, c, kv)
            probs = self.attn_drop(torch.softmax(scores, dim=-1))
            ctx = (probs @ v.transpose(-1, -2)).mean(dim=1)  # (b, c, n), averaged over heads
            outs.append(self.proj_drop(out_lin(ctx.transpose(1, 2))))
        return outs


class _CCTBlock(nn.Module):
    """Pre-norm block: channel cross attention + per-level MLP, both residual."""

    def __init__(self, channels: List[int], num_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in channels)
        self.norm_all = nn.LayerNorm(sum(channels), eps=1e-6)
        self.attn = _ChannelAttentionLayer(channels, num_heads, dropout)
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in channels)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, c * mlp_ratio), nn.GELU(), nn.Dropout(dropout), nn.Linear(c * mlp_ratio, c),
                          nn.Dropout(dropout)) for c in channels)

    def forward(self, tokens: List[Tensor]) -> List[Tensor]:
        normed = [n(t) for n, t in zip(self.norms, tokens)]
        attended = self.attn(normed, self.norm_all(torch.cat(tokens, dim=-1)))
        tokens = [t + a for t, a in zip(tokens, attended)]
        return [t + mlp(n(t)) for t, n, mlp in zip(tokens, self.mlp_norms, self.mlps)]


class ChannelCrossFusionTransformer(nn.Module):
    """CCT: tokenise the four skips, run ``num_layers`` channel-cross-attention blocks, map tokens back to
    each skip's resolution (upsample + 1x1 ConvBNAct) and add them to the skip (residual)."""

    def __init__(self, channels: List[int], patch_sizes: List[int], grid: int, num_layers: int = 4,
                 num_heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.ModuleList(_PatchTokens(c, p, grid, dropout) for c, p in zip(channels, patch_sizes))
        self.blocks = nn.ModuleList(_CCTBlock(channels, num_heads, mlp_ratio, dropout) for _ in range(num_layers))
        self.final_norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in channels)
        self.reconstruct = nn.ModuleList(ConvBNAct(c, c, 1) for c in channels)

    def forward(self, skips: List[Tensor]) -> List[Tensor]:
        embedded = [emb(s) for emb, s in zip(self.embed, skips)]
        tokens = [t for t, _ in embedded]
        grid = embedded[0][1]  # the same token grid at every level (patch sizes halve as maps do)
        for blk in self.blocks:
            tokens = blk(tokens)
        outs = []
        for s, t, norm, rec in zip(skips, tokens, self.final_norms, self.reconstruct):
            fmap = norm(t).transpose(1, 2).reshape(t.shape[0], t.shape[2], *grid)
            outs.append(s + rec(F.interpolate(fmap, size=s.shape[-2:], mode="nearest")))
        return outs


class ChannelCrossAttention(nn.Module):
    """CCA: channel weights of the skip from the pooled skip and pooled decoder signal (sigmoid)."""

    def __init__(self, gate_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.mlp_x = nn.Linear(skip_channels, skip_channels)
        self.mlp_g = nn.Linear(gate_channels, skip_channels)

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        att = (self.mlp_x(x.mean(dim=(2, 3))) + self.mlp_g(g.mean(dim=(2, 3)))) / 2
        return F.relu(x * torch.sigmoid(att)[:, :, None, None])


@register_model("uctransnet", paper_name="UCTransNet", paper_dice=91.05,
                tiny=dict(base_channels=4, num_layers=1, num_heads=1, img_size=64))
class UCTransNet(SegmentationModel):
    """UCTransNet: U-Net encoder (base, 2x, 4x, 8x, 8x channels), CCT on the four skips, CCA-gated decoder."""

    size_divisor = 16
    #: the encoder (``--freeze-encoder-epochs``): the convolutional down path
    encoder_modules = ('inc', 'downs')

    def __init__(self, in_chans: int = 3, num_classes: int = 1, base_channels: int = 64, num_layers: int = 4,
                 num_heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.1, img_size: int = 256,
                 preprocessing: Optional[dict] = None) -> None:
        super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
        c = check_positive_int(base_channels, "base_channels")
        if check_positive_int(img_size, "img_size") % 16:
            raise ValueError(f"img_size must be a multiple of 16, got {img_size}")
        chs = [c, 2 * c, 4 * c, 8 * c]
        self.inc = ConvBNAct(in_chans, c)
        self.downs = nn.ModuleList(ConvStack(a, b, 2) for a, b in zip(chs, chs[1:] + [8 * c]))
        self.cct = ChannelCrossFusionTransformer(chs, [16, 8, 4, 2], img_size // 16, check_positive_int(num_layers, "num_layers"),
                                                 check_positive_int(num_heads, "num_heads"),
                                                 check_positive_int(mlp_ratio, "mlp_ratio"), check_probability(dropout, "dropout"))
        # decoder: (decoder input channels, skip channels, output channels), deepest first
        plan = [(8 * c, 8 * c, 4 * c), (4 * c, 4 * c, 2 * c), (2 * c, 2 * c, c), (c, c, c)]
        self.cca = nn.ModuleList(ChannelCrossAttention(g, s) for g, s, _ in plan)
        self.dec = nn.ModuleList(ConvStack(g + s, o, 2) for g, s, o in plan)
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        skips = self.cct(skips)
        for cca, dec in zip(self.cca, self.dec):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = dec(torch.cat([cca(y, skips.pop()), y], dim=1))
        return self.head(y)
