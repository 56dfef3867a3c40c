"""``ss2d_scan``: the fused four-direction SS2D selective scan, as a ``torch.library`` custom op."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _backend
from ._checks import check_ss2d_args
from ._scan_autograd import checkpoint_chunk, fake_ckpt, fake_grads, register_scan_autograd
from .reference import NUM_DIRECTIONS, ss2d_scan_ref

__all__ = ["ss2d_scan"]


@torch.library.custom_op("grainseg::ss2d_scan_fwd", mutates_args=())
def _ss2d_scan_fwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor],
    delta_bias: Optional[Tensor],
    delta_softplus: bool,
    chunk: int,
) -> Tuple[Tensor, Tensor]:
    y, ckpt = _backend.extension().ss2d_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk)
    return y, ckpt


@_ss2d_scan_fwd.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk):
    b, c, h, w = u.shape
    return torch.empty_like(u, memory_format=torch.contiguous_format), fake_ckpt(
        u, (b, NUM_DIRECTIONS, c), h * w, A.shape[-1], chunk
    )


@torch.library.custom_op("grainseg::ss2d_scan_bwd", mutates_args=())
def _ss2d_scan_bwd(
    dy: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor],
    delta_bias: Optional[Tensor],
    delta_softplus: bool,
    ckpt: Tensor,
    chunk: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = _backend.extension().ss2d_bwd(dy, u, delta, A, B, C, D, delta_bias, delta_softplus, ckpt, chunk)
    return tuple(grads)


@_ss2d_scan_bwd.register_fake
def _(dy, u, delta, A, B, C, D, delta_bias, delta_softplus, ckpt, chunk):
    return fake_grads(u, delta, A, B, C, D, delta_bias, (NUM_DIRECTIONS, u.shape[1]))


register_scan_autograd(_ss2d_scan_fwd, _ss2d_scan_bwd)


def ss2d_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
) -> Tensor:
    """Fused SS2D four-direction selective scan in spatial layout (VM-UNet's cross-scan + scan + merge).

    Args:
        u: (b, c, h, w) input.
        delta: (b, 4, c, h, w) per-direction step sizes (before ``delta_bias`` and softplus).
        A: (4, c, n) real state matrices (VM-UNet uses ``-exp(A_logs)``); n <= 256.
        B, C: (b, 4, n, h, w) per-direction input and output projections.
        D: optional (4, c) skip weights; delta_bias: optional (4, c) added to delta.
        delta_softplus: apply softplus to ``delta + delta_bias``.

    Direction k visits the h*w positions in order 0: row-major, 1: column-major, 2: reverse
    row-major, 3: reverse column-major, running the selective scan along its order with its own
    delta, A, B, C, D; the result at a position is the sum of the four directions' outputs there.
    The kernels read every input in place through the four index orders (no reordered copies).

    Returns:
        y: (b, c, h, w) in ``u``'s dtype.  Differentiable in every tensor argument.
    """
    check_ss2d_args(u, delta, A, B, C, D, delta_bias)
    if _backend.backend(u.device) == "reference":
        return ss2d_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus)
    y, _ = _ss2d_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, checkpoint_chunk(u.device))
    return y
