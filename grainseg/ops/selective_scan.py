"""``selective_scan``: a drop-in for mamba-ssm's ``selective_scan_fn`` that also runs on CPU."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch.nn.functional as F
from torch import Tensor

from . import _backend
from ._checks import check_selective_scan_args
from ._scan_autograd import checkpoint_chunk, define_scan_op
from .reference import compute_dtype, selective_scan_ref

__all__ = ["selective_scan"]


def _layout(u: Tensor):
    """ckpt (batch, dim, n_chunks, n) over L steps; D and delta_bias (dim,)."""
    batch, dim, L = u.shape
    return (batch, dim), L, (dim,)


_selective_scan_fwd = define_scan_op("selective_scan", "selective_scan", _layout)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` signature and semantics (real A).

    Args:
        u, delta: (batch, dim, L); A: (dim, N) with N <= 256;
        B, C: (batch, N, L) or grouped (batch, G, N, L), channel d using group d // (dim // G);
        D, delta_bias: optional (dim,); z: optional (batch, dim, L) gate, output *= silu(z).
        delta_softplus: apply softplus to ``delta + delta_bias``.
        return_last_state: also return the final state (batch, dim, N) (fp32; not differentiable).

    Returns:
        y (batch, dim, L) in ``u``'s dtype, or ``(y, last_state)``.  Differentiable in u, delta,
        A, B, C, D, z and delta_bias.  See :func:`grainseg.ops.reference.selective_scan_ref`.
    """
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias)
    if _backend.backend(u.device) == "reference":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    B4 = B if B.dim() == 4 else B.unsqueeze(1)
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    y, ckpt = _selective_scan_fwd(u, delta, A, B4, C4, D, delta_bias, delta_softplus, checkpoint_chunk(u.device))
    if z is not None:
        ct = compute_dtype(u.dtype)
        y = (y.to(ct) * F.silu(z.to(ct))).to(u.dtype)
    if not return_last_state:
        return y
    if ckpt.shape[2] == 0:  # L == 0: the state never moved
        return y, ckpt.new_zeros(ckpt.shape[0], ckpt.shape[1], ckpt.shape[3])
    return y, ckpt[:, :, -1]
