"""Pure-PyTorch references of the scan ops: readable, slow, and the ground truth for every kernel.

``selective_scan_ref`` follows mamba-ssm's ``selective_scan_ref`` (real A, input-dependent B and C).
``ss2d_scan_ref`` is VM-UNet's ``SS2D.forward_core`` followed by ``y1 + y2 + y3 + y4``: it materialises
the four direction-ordered copies (cross-scan), runs one grouped selective scan over them and merges
the four outputs back into the spatial layout (cross-merge).

Both compute in float32 (float64 for float64 inputs) and return ``u``'s dtype.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "NUM_DIRECTIONS",
    "compute_dtype",
    "direction_order",
    "direction_unorder",
    "cross_scan",
    "cross_merge",
    "selective_scan_ref",
    "ss2d_scan_ref",
]

#: SS2D scans every image in four orders: row-major, column-major and both reversed.
NUM_DIRECTIONS = 4


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """State/accumulation dtype of the scans: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def direction_order(x: Tensor, k: int) -> Tensor:
    """Flatten the last two (h, w) dims of ``x`` into the order in which direction ``k`` visits them.

    k = 0: row-major, 1: column-major, 2: reverse row-major, 3: reverse column-major.
    """
    seq = x.flatten(-2) if k % 2 == 0 else x.transpose(-2, -1).flatten(-2)
    return seq.flip(-1) if k >= 2 else seq


def direction_unorder(seq: Tensor, k: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`direction_order`: put a direction-``k`` sequence back on the (h, w) grid."""
    if k >= 2:
        seq = seq.flip(-1)
    if k % 2 == 0:
        return seq.unflatten(-1, (h, w))
    return seq.unflatten(-1, (w, h)).transpose(-2, -1)


def cross_scan(x: Tensor) -> Tensor:
    """(b, c, h, w) -> (b, 4, c, h*w): the four direction-ordered copies VM-UNet materialises."""
    return torch.stack([direction_order(x, k) for k in range(NUM_DIRECTIONS)], dim=1)


def cross_merge(ys: Tensor, h: int, w: int) -> Tensor:
    """(b, 4, c, h*w) -> (b, c, h, w): sum of the four directions' outputs at each position."""
    return sum(direction_unorder(ys[:, k], k, h, w) for k in range(NUM_DIRECTIONS))


def selective_scan_ref(
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
):
    """Reference selective scan (mamba-ssm semantics, real A).

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or grouped (batch, G, N, L) with
    channel d using group d // (dim // G); D, delta_bias: (dim,).

    For t = 0..L-1, with dt = softplus(delta + delta_bias) (or delta + delta_bias):
        x_t = exp(dt * A) * x_{t-1} + dt * B_t * u_t;   y_t = <x_t, C_t> + D * u_t
    then y *= silu(z).  Returns y in u's dtype, and the last state x_{L-1} (batch, dim, N) in the
    compute dtype when ``return_last_state``.
    """
    dtype_in = u.dtype
    ct = compute_dtype(dtype_in)
    batch, dim, L = u.shape
    n = A.shape[1]
    u, delta, A = u.to(ct), delta.to(ct), A.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    # (batch, G, N, L) -> (batch, dim, L, N): each channel sees its group's B and C.
    B = B.to(ct).repeat_interleave(dim // B.shape[1], dim=1).transpose(2, 3)
    C = C.to(ct).repeat_interleave(dim // C.shape[1], dim=1).transpose(2, 3)

    decay = torch.exp(delta[..., None] * A[:, None, :])  # (batch, dim, L, N)
    drive = (delta * u)[..., None] * B  # (batch, dim, L, N)
    x = u.new_zeros(batch, dim, n)
    ys = []
    for t in range(L):
        x = decay[:, :, t] * x + drive[:, :, t]
        ys.append((x * C[:, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + u * D.to(ct)[:, None]
    if z is not None:
        y = y * F.silu(z.to(ct))
    out = y.to(dtype_in)
    return (out, x) if return_last_state else out


def ss2d_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    scan: Callable[..., Tensor] = selective_scan_ref,
) -> Tensor:
    """Reference four-direction SS2D scan in spatial layout (VM-UNet's cross-scan, scan, cross-merge).

    u: (b, c, h, w); delta: (b, 4, c, h, w); A: (4, c, n); B, C: (b, 4, n, h, w); D, delta_bias: (4, c).
    Direction k scans the h*w positions in :func:`direction_order` ``k`` with its own delta, A, B, C,
    D and delta_bias; y at a position is the sum of the four directions' outputs there.

    ``scan`` is the 1-D selective scan used on the materialised copies: this reference by default;
    ``grainseg.ops.selective_scan`` gives the "materialised copies + 1-D kernel" path.
    """
    b, c, h, w = u.shape
    K = NUM_DIRECTIONS
    ct = compute_dtype(u.dtype)
    order = lambda t: torch.stack([direction_order(t[:, k], k) for k in range(K)], dim=1)  # noqa: E731
    xs = cross_scan(u.to(ct)).reshape(b, K * c, h * w)
    dts = order(delta).reshape(b, K * c, h * w)
    ys = scan(
        xs,
        dts,
        A.reshape(K * c, -1),
        order(B),
        order(C),
        D.reshape(-1) if D is not None else None,
        delta_bias=delta_bias.reshape(-1) if delta_bias is not None else None,
        delta_softplus=delta_softplus,
    )
    return cross_merge(ys.reshape(b, K, c, h * w).to(ct), h, w).to(u.dtype)
