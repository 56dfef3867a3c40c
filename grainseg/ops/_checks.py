"""Argument validation shared by the scan ops: every error names the argument and what was expected."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor

from ._backend import kernel_limit

#: Largest state size the kernels support (per-thread state lives in registers / stack), from grainseg._C.
MAX_D_STATE = kernel_limit("max_d_state")

Dim = Union[int, str]


def _fmt(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_tensor(op: str, name: str, t, allow_none: bool = False) -> None:
    """``t`` must be a real floating-point tensor (or None when ``allow_none``)."""
    if t is None:
        if allow_none:
            return
        raise ValueError(f"{op}: argument '{name}' is required, got None")
    if not isinstance(t, Tensor):
        raise ValueError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise ValueError(
            f"{op}: argument '{name}' must be a real floating-point tensor "
            f"(float16, bfloat16, float32 or float64), got dtype {t.dtype}"
        )


def check_shape(op: str, name: str, t: Tensor, expected: Sequence[Dim], sizes: Dict[str, int]) -> None:
    """``t.shape`` must equal ``expected``, whose string entries are looked up in ``sizes``."""
    want = tuple(sizes[e] if isinstance(e, str) else e for e in expected)
    if tuple(t.shape) != want:
        names = _fmt(expected)
        raise ValueError(
            f"{op}: argument '{name}' must have shape {names} = {_fmt(want)}, got {_fmt(t.shape)}"
        )


def check_rank(op: str, name: str, t: Tensor, ranks: Sequence[int], layout: str) -> None:
    if t.dim() not in ranks:
        raise ValueError(f"{op}: argument '{name}' must have shape {layout}, got {_fmt(t.shape)}")


def check_same_device(op: str, tensors: Dict[str, Optional[Tensor]]) -> None:
    present = {k: v for k, v in tensors.items() if v is not None}
    first_name, first = next(iter(present.items()))
    for name, t in present.items():
        if t.device != first.device:
            raise ValueError(
                f"{op}: all tensors must be on one device; '{first_name}' is on {first.device} "
                f"but '{name}' is on {t.device}"
            )


def check_d_state(op: str, n: int) -> None:
    if not 1 <= n <= MAX_D_STATE:
        raise ValueError(f"{op}: the state size N (last dim of 'A') must be in 1..{MAX_D_STATE}, got {n}")


def check_ss2d_args(u, delta, A, B, C, D, delta_bias) -> None:
    """Validate :func:`grainseg.ops.ss2d_scan` arguments (see its docstring for the layout)."""
    op = "ss2d_scan"
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        check_tensor(op, name, t)
    check_tensor(op, "D", D, allow_none=True)
    check_tensor(op, "delta_bias", delta_bias, allow_none=True)
    check_same_device(op, dict(u=u, delta=delta, A=A, B=B, C=C, D=D, delta_bias=delta_bias))
    check_rank(op, "u", u, (4,), "(batch, channels, height, width)")
    check_rank(op, "A", A, (3,), "(4, channels, d_state)")
    b, c, h, w = u.shape
    sizes = dict(batch=b, channels=c, height=h, width=w, d_state=A.shape[-1])
    check_d_state(op, A.shape[-1])
    check_shape(op, "A", A, (4, "channels", "d_state"), sizes)
    check_shape(op, "delta", delta, ("batch", 4, "channels", "height", "width"), sizes)
    check_shape(op, "B", B, ("batch", 4, "d_state", "height", "width"), sizes)
    check_shape(op, "C", C, ("batch", 4, "d_state", "height", "width"), sizes)
    if D is not None:
        check_shape(op, "D", D, (4, "channels"), sizes)
    if delta_bias is not None:
        check_shape(op, "delta_bias", delta_bias, (4, "channels"), sizes)


def check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Validate :func:`grainseg.ops.selective_scan` arguments (mamba-ssm's ``selective_scan_fn`` layout)."""
    op = "selective_scan"
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        check_tensor(op, name, t)
    for name, t in (("D", D), ("z", z), ("delta_bias", delta_bias)):
        check_tensor(op, name, t, allow_none=True)
    check_same_device(op, dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias))
    check_rank(op, "u", u, (3,), "(batch, dim, L)")
    check_rank(op, "A", A, (2,), "(dim, d_state)")
    batch, dim, L = u.shape
    sizes = dict(batch=batch, dim=dim, L=L, d_state=A.shape[-1])
    check_d_state(op, A.shape[-1])
    check_shape(op, "delta", delta, ("batch", "dim", "L"), sizes)
    check_shape(op, "A", A, ("dim", "d_state"), sizes)
    for name, t in (("B", B), ("C", C)):
        check_rank(op, name, t, (3, 4), "(batch, d_state, L) or grouped (batch, groups, d_state, L)")
        if t.dim() == 3:
            check_shape(op, name, t, ("batch", "d_state", "L"), sizes)
        else:
            g = t.shape[1]
            if g < 1 or dim % g:
                raise ValueError(f"{op}: argument '{name}' has {g} groups, which must divide dim = {dim}")
            check_shape(op, name, t, ("batch", g, "d_state", "L"), sizes)
    if z is not None:
        check_shape(op, "z", z, ("batch", "dim", "L"), sizes)
    if D is not None:
        check_shape(op, "D", D, ("dim",), sizes)
    if delta_bias is not None:
        check_shape(op, "delta_bias", delta_bias, ("dim",), sizes)
