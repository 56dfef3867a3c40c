"""SS2D: VMamba's 2-D selective-scan mixer (VM-UNet's ``SS2D`` with ``forward_corev0``), on ``ss2d_scan``.

Parameter names and shapes follow the reference (``in_proj``, ``conv2d``, ``x_proj_weight``,
``dt_projs_weight``, ``dt_projs_bias``, ``A_logs``, ``Ds``, ``out_norm``, ``out_proj``), so the
authors' state dicts load unchanged.  The reference projects four reordered copies of the feature
map; ``x_proj`` acts per position, so here it runs once on the spatial layout for all four
directions and the fused :func:`grainseg.ops.ss2d_scan` reads the four scan orders in place.
"""
from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grainseg.ops import ss2d_scan
from grainseg.ops._checks import MAX_D_STATE
from grainseg.ops.reference import NUM_DIRECTIONS

__all__ = ["SS2D"]


def _positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SS2D(nn.Module):
    """Four-direction selective-scan mixer on channel-last maps: (b, h, w, d_model) -> same shape.

    in_proj (no bias) splits into x and z; x goes through a depthwise ``d_conv`` conv and SiLU, the
    per-direction projections give delta (rank ``dt_rank`` = ceil(d_model / 16) by default), B and C
    (``d_state`` each), the fused scan mixes the map along four orders, then LayerNorm, times SiLU(z),
    out_proj.  Initialisation follows Mamba: softplus-inverse dt bias, A = -(1..N), D = 1.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 3,
        expand: Union[int, float] = 2,
        dt_rank: Union[int, str] = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = _positive_int(d_model, "d_model")
        self.d_state = _positive_int(d_state, "d_state")
        if self.d_state > MAX_D_STATE:
            raise ValueError(f"d_state must be at most {MAX_D_STATE} (the largest state the scan kernels support), "
                             f"got {d_state}")
        self.d_conv = _positive_int(d_conv, "d_conv")
        if d_conv % 2 == 0:
            raise ValueError(f"d_conv must be odd (the conv keeps the map size), got {d_conv}")
        if not isinstance(expand, (int, float)) or expand <= 0:
            raise ValueError(f"expand must be a positive number, got {expand!r}")
        self.d_inner = int(expand * d_model)
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        self.dt_rank = _positive_int(dt_rank, "dt_rank")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        K, D, N, R = NUM_DIRECTIONS, self.d_inner, self.d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * D, bias=bias)
        self.conv2d = nn.Conv2d(D, D, d_conv, padding=(d_conv - 1) // 2, groups=D, bias=conv_bias)
        # Per-direction projections, stacked the way the reference stores them.
        bound = 1.0 / math.sqrt(D)  # nn.Linear's default init of the reference's x_proj
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, D).uniform_(-bound, bound))
        std = R**-0.5 * dt_scale
        self.dt_projs_weight = nn.Parameter(torch.empty(K, D, R).uniform_(-std, std))
        # dt = softplus(bias) starts log-uniform in [dt_min, dt_max]: bias = softplus^-1(dt).
        dt = torch.exp(torch.rand(K, D) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(K * D, 1)
        self.A_logs = nn.Parameter(torch.log(A))  # (K * D, N); A = -exp(A_logs)
        self.Ds = nn.Parameter(torch.ones(K * D))
        for p in (self.A_logs, self.Ds):
            p._no_weight_decay = True
        self.out_norm = nn.LayerNorm(D)
        self.out_proj = nn.Linear(D, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def scan(self, x: Tensor) -> Tensor:
        """The SSM core on a (b, d_inner, h, w) map: projections, then the fused four-direction scan."""
        K, N, R = NUM_DIRECTIONS, self.d_state, self.dt_rank
        b, d, h, w = x.shape
        # Both projections as plain (batched) matrix products, whose outputs are already in the layouts
        # the scan reads: x_proj for all four directions at once, (K (R + 2N), d) @ (b, d, h w), then
        # dt_proj per direction, (K, d, R) @ (b, K, R, h w) -> (b, K, d, h w).  (The einsums they replace
        # returned permuted views, and each cost a full strided copy of delta, 4x the size of x.)
        x_dbl = torch.matmul(self.x_proj_weight.flatten(0, 1), x.reshape(b, d, h * w)).view(b, K, R + 2 * N, h, w)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = torch.matmul(self.dt_projs_weight, dts.flatten(3)).view(b, K, d, h, w)
        A = -torch.exp(self.A_logs.float()).view(K, self.d_inner, N)
        return ss2d_scan(
            x,
            dts,
            A,
            Bs,
            Cs,
            self.Ds.float().view(K, self.d_inner),
            self.dt_projs_bias.float(),
            delta_softplus=True,
        )

    def forward(self, x: Tensor) -> Tensor:
        """(b, h, w, d_model) -> (b, h, w, d_model)."""
        if x.dim() != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"SS2D expects (batch, height, width, {self.d_model}) input, got {tuple(x.shape)}")
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2).contiguous()))
        y = self.scan(x).permute(0, 2, 3, 1)
        y = self.out_norm(y) * F.silu(z)
        return self.dropout(self.out_proj(y))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}"
