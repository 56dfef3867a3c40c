"""Patch embedding, merging (2x down) and expanding (up) on channel-last maps, as in VM-UNet."""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchEmbed", "PatchMerging", "PatchExpand"]


class PatchEmbed(nn.Module):
    """(b, in_chans, H, W) -> (b, H/p, W/p, dim): a p x p stride-p conv (``proj``), then LayerNorm (``norm``)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"PatchEmbed needs H and W divisible by {self.patch_size}, got {h}x{w}")
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """(b, h, w, dim) -> (b, h/2, w/2, 2 dim): each 2x2 patch's four vectors concatenated, LN, linear.

    Concatenation order (row, col offsets): (0, 0), (1, 0), (0, 1), (1, 1), as the reference does.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"PatchMerging needs even height and width, got {h}x{w}")
        # (b, h/2, i, w/2, j, c) -> (b, h/2, w/2, j, i, c): the row offset i varies fastest.
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """(b, h, w, in_dim) -> (b, s h, s w, out_dim): linear to s*s*out_dim (``expand``), unfold, LN (``norm``).

    The expanded vector at (y, x) holds the s x s output pixels in order (dy, dx, channel).
    VM-UNet's decoder uses (2 dim -> dim, s=2) and its final expand (dim -> dim / 4, s=4).
    """

    def __init__(self, in_dim: int, out_dim: int, scale: int = 2) -> None:
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(in_dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        s, c = self.scale, self.out_dim
        x = self.expand(x).reshape(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, c)
        return self.norm(x)
