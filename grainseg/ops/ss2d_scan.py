"""``ss2d_scan``: the fused four-direction SS2D selective scan, as a ``torch.library`` custom op."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from . import _backend
from ._checks import check_ss2d_args
from ._scan_autograd import checkpoint_chunk, define_scan_op
from .reference import NUM_DIRECTIONS, ss2d_scan_ref

__all__ = ["ss2d_scan"]


def _layout(u: Tensor):
    """ckpt (b, 4, c, n_chunks, n) over the h * w positions; D and delta_bias (4, c)."""
    b, c, h, w = u.shape
    return (b, NUM_DIRECTIONS, c), h * w, (NUM_DIRECTIONS, c)


_ss2d_scan_fwd = define_scan_op("ss2d_scan", "ss2d", _layout)


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
