"""A dilated convolution whose weight gradient on the CPU is a few matrix products.

torch's CPU weight gradient of a dilated convolution with 16 or more channels is 4-8x slower than the
same convolution's forward (torch 2.13, oneDNN: about 65 ms against 8 ms for VM-UNet-ASPP's head,
24 -> 24 channels at 256 x 256, one thread, AMD EPYC with AVX2), while the undilated one costs about as
much as its forward.  EnhancedASPP runs five such convolutions at full resolution; the profiler put
their weight gradients at a fifth of a VM-UNet-ASPP training step, though the timed step gains only
1-4 % from this (benchmarks/bench_aspp_head.py, docs/kernels.md).

:func:`dilated_conv2d` keeps torch's forward and input gradient and computes the weight gradient as one
matrix product per kernel tap, with no copies of shifted windows: on the zero-padded input flattened to
(positions, channels) and the output gradient laid out on the same padded grid (zeros outside the
output), tap (i, j) is ``grad_out.T @ x[offset_ij : offset_ij + Q]``, one contiguous slice, batched over
chunks of positions whose partial sums are added afterwards.  The result agrees with torch's to float
rounding (measured against a float64 reference: the same error or less).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dilated_conv2d"]


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# Rows of the grid summed by one matrix product.  The products of one tap are batched over chunks of
# this many positions and their partial sums added afterwards: one long product over all positions sums
# them one after another in some BLAS kernels (measured: 15x torch's error at 8 channels).
_CHUNK = 4096


def _on_grid(t: Tensor, top: int, left: int, hp: int, wp: int, rows: int) -> Tensor:
    """t (b, c, h, w) as `rows` x c: the (b, hp, wp) grid, t at rows top.., columns left.. of each image,
    zeros elsewhere and in the rows past the grid.  Only the zeros are written before the copy."""
    b, c, h, w = t.shape
    flat = t.new_empty((rows, c))
    flat[b * hp * wp:].zero_()
    grid = flat[:b * hp * wp].view(b, hp, wp, c)
    grid[:, :top].zero_()
    grid[:, top + h:].zero_()
    grid[:, top:top + h, :left].zero_()
    grid[:, top:top + h, left + w:].zero_()
    grid[:, top:top + h, left:left + w].copy_(t.permute(0, 2, 3, 1))
    return flat


def _weight_grad(grad_out: Tensor, x: Tensor, weight_shape: torch.Size, padding: Tuple[int, int],
                 dilation: Tuple[int, int]) -> Tensor:
    """dL/dweight of a stride-1, groups-1 convolution, one batched matrix product per tap (module doc)."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight_shape
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = grad_out.shape[-2:]
    # Positions p of the grid: the output gradient is zero past each image's output rows and columns, so
    # tap (i, j) is the sum over p of grad_out[p] x[p + offset_ij]; p runs over whole chunks, the
    # grids' tail rows (zeros) covering the last chunk and the largest offset.
    max_offset = dh * (kh - 1) * wp + dw * (kw - 1)
    n_chunks = -(-(b * hp * wp - max_offset) // _CHUNK)
    rows = n_chunks * _CHUNK + max_offset
    xf = _on_grid(x, ph, pw, hp, wp, rows)
    gt = _on_grid(grad_out, 0, 0, hp, wp, rows)[:n_chunks * _CHUNK].view(n_chunks, _CHUNK, o).transpose(1, 2)
    out = grad_out.new_empty((kh, kw, o, c))
    for i in range(kh):
        for j in range(kw):
            offset = i * dh * wp + j * dw
            xs = xf[offset:offset + n_chunks * _CHUNK].view(n_chunks, _CHUNK, c)
            torch.sum(torch.bmm(gt, xs), dim=0, out=out[i, j])
    return out.permute(2, 3, 0, 1).contiguous()


class _DilatedConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, padding: Tuple[int, int], dilation: Tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return F.conv2d(x, weight, None, 1, padding, dilation)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], list(ctx.padding), list(ctx.dilation), False, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(grad_out, x, weight.shape, ctx.padding, ctx.dilation)
        return grad_x, grad_w, None, None


# Fewest input and output channels for which the per-tap products pay.  torch's own weight gradient
# is fast below 16 channels and slow from 16 on (one thread, 256 x 256, dilation 3: 5.3 ms against
# 7.3 ms per-tap at 8 channels, 47 ms against 8 ms at 16, 82 ms against 21 ms at 24).
_MIN_CHANNELS = 16


def dilated_conv2d(x: Tensor, weight: Tensor, padding=0, dilation=1) -> Tensor:
    """``F.conv2d(x, weight, None, 1, padding, dilation)`` with the faster CPU weight gradient.

    Used where it pays: a CPU float32 / float64 input outside autocast, a dilation above 1, at least
    16 input and output channels, and a weight that needs its gradient; everything else (CUDA, bf16
    autocast, inference, fewer channels) is plain ``F.conv2d``.  Stride 1, groups 1, no bias.
    """
    padding, dilation = _pair(padding), _pair(dilation)
    if (x.device.type == "cpu" and x.dim() == 4 and x.dtype in (torch.float32, torch.float64)
            and weight.dtype == x.dtype and max(dilation) > 1 and min(weight.shape[:2]) >= _MIN_CHANNELS
            and torch.is_grad_enabled() and weight.requires_grad and not torch.is_autocast_enabled("cpu")):
        return _DilatedConv2d.apply(x, weight, padding, dilation)
    return F.conv2d(x, weight, None, 1, padding, dilation)
