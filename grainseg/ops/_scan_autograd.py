"""The scan custom ops, defined once for both ops: :func:`define_scan_op` and its plumbing.

Each op is a pair of ``torch.library`` custom ops: ``grainseg::<name>_fwd(u, delta, A, B, C, D, delta_bias,
softplus, chunk) -> (y, ckpt)`` and ``grainseg::<name>_bwd(dy, ..., ckpt, chunk) -> (du, ddelta, dA, dB,
dC, dD, ddelta_bias)``, calling ``grainseg._C.<kernel>_fwd`` / ``_bwd``, with fake kernels (shapes only,
for ``torch.compile`` and meta tensors) and the backward op registered as the forward's autograd.
``ckpt`` holds the scan state at the end of every ``chunk`` steps (fp32, fp64 for fp64 inputs): the
backward kernel recomputes the states inside a chunk from it instead of storing all L*N states.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _backend
from ._backend import kernel_limit
from .reference import compute_dtype

#: Steps between saved states in the CPU kernels' forward (backward memory O(L / chunk * N)), from grainseg._C.
CPU_CHECKPOINT_CHUNK = kernel_limit("cpu_checkpoint_chunk")
#: The CUDA kernels save one state per chunk of this many steps (their tile), from grainseg._C.
CUDA_CHECKPOINT_CHUNK = kernel_limit("cuda_checkpoint_chunk")


def checkpoint_chunk(device: torch.device) -> int:
    return CUDA_CHECKPOINT_CHUNK if device.type == "cuda" else CPU_CHECKPOINT_CHUNK


def num_chunks(length: int, chunk: int) -> int:
    return (length + chunk - 1) // chunk


def fake_ckpt(u: Tensor, lead: Sequence[int], length: int, d_state: int, chunk: int) -> Tensor:
    """Empty checkpoint tensor of shape (*lead, n_chunks, d_state) for fake (meta) kernels."""
    return u.new_empty((*lead, num_chunks(length, chunk), d_state), dtype=compute_dtype(u.dtype))


def fake_grads(u, delta, A, B, C, D: Optional[Tensor], delta_bias: Optional[Tensor], param_shape):
    """Empty gradients matching the backward ops' outputs, for fake (meta) kernels."""
    def like_param(p: Optional[Tensor]) -> Tensor:
        return A.new_empty(param_shape, dtype=p.dtype if p is not None else torch.float32)

    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        torch.empty_like(delta, memory_format=torch.contiguous_format),
        torch.empty_like(A, memory_format=torch.contiguous_format),
        torch.empty_like(B, memory_format=torch.contiguous_format),
        torch.empty_like(C, memory_format=torch.contiguous_format),
        like_param(D),
        like_param(delta_bias),
    )


def register_scan_autograd(fwd_op, bwd_op) -> None:
    """Attach the backward op to the forward op: gradients for u, delta, A, B, C, D, delta_bias."""

    def setup_context(ctx, inputs, output):
        u, delta, A, B, C, D, delta_bias, delta_softplus, chunk = inputs
        ckpt = output[1]
        ctx.mark_non_differentiable(ckpt)
        ctx.set_materialize_grads(False)  # no zero-filled cotangent for ckpt (as large as the states saved)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, ckpt)
        ctx.delta_softplus = delta_softplus
        ctx.chunk = chunk

    def backward(ctx, dy, _dckpt):
        if dy is None:  # y did not reach the loss
            return (None,) * 9
        u, delta, A, B, C, D, delta_bias, ckpt = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, ddb = bwd_op(
            dy.contiguous(), u, delta, A, B, C, D, delta_bias, ctx.delta_softplus, ckpt, ctx.chunk
        )
        return (
            du,
            ddelta,
            dA,
            dB,
            dC,
            dD if D is not None else None,
            ddb if delta_bias is not None else None,
            None,
            None,
        )

    fwd_op.register_autograd(backward, setup_context=setup_context)


#: ``layout(u) -> (ckpt_lead, length, param_shape)``: for an op's ``u``, the dims of ``ckpt`` before
#: (n_chunks, d_state), the sequence length, and the shape of D / delta_bias (and of their gradients).
Layout = Callable[[Tensor], Tuple[Sequence[int], int, Sequence[int]]]


def define_scan_op(name: str, kernel: str, layout: Layout):
    """Defines the custom ops ``grainseg::<name>_fwd`` and ``grainseg::<name>_bwd`` on the extension's
    ``<kernel>_fwd`` / ``<kernel>_bwd``, their fake kernels and the autograd; returns the forward op
    ``(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk) -> (y, ckpt)``."""

    def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                delta_bias: Optional[Tensor], delta_softplus: bool, chunk: int) -> Tuple[Tensor, Tensor]:
        run = getattr(_backend.extension(), f"{kernel}_fwd")  # looked up per call: tests swap the module
        y, ckpt = run(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk)
        return y, ckpt

    def backward(dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], delta_softplus: bool, ckpt: Tensor,
                 chunk: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        run = getattr(_backend.extension(), f"{kernel}_bwd")
        return tuple(run(dy, u, delta, A, B, C, D, delta_bias, delta_softplus, ckpt, chunk))

    fwd_op = torch.library.custom_op(f"grainseg::{name}_fwd", forward, mutates_args=())
    bwd_op = torch.library.custom_op(f"grainseg::{name}_bwd", backward, mutates_args=())

    @fwd_op.register_fake
    def _(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk):
        lead, length, _ = layout(u)
        return torch.empty_like(u, memory_format=torch.contiguous_format), fake_ckpt(
            u, lead, length, A.shape[-1], chunk
        )

    @bwd_op.register_fake
    def _(dy, u, delta, A, B, C, D, delta_bias, delta_softplus, ckpt, chunk):
        return fake_grads(u, delta, A, B, C, D, delta_bias, layout(u)[2])

    register_scan_autograd(fwd_op, bwd_op)
    return fwd_op
