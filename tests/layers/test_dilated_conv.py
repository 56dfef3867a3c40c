"""dilated_conv2d: torch's dilated convolution with a per-tap matrix-product weight gradient on the CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import grainseg.layers.dilated_conv as dilated_conv_mod
from grainseg.layers.dilated_conv import dilated_conv2d


@pytest.fixture
def any_channels(monkeypatch):
    """The per-tap gradient for every channel count (it is used from 16 on): small, fast cases."""
    monkeypatch.setattr(dilated_conv_mod, "_MIN_CHANNELS", 1)

CASES = [  # batch, in, out, h, w, kernel, padding, dilation, channels-last input
    (1, 6, 5, 16, 16, 3, 3, 3, True),
    (2, 5, 7, 13, 17, 3, 2, 2, False),
    (2, 5, 7, 13, 17, 3, 0, 2, False),  # "valid": the output is smaller than the input
    (1, 4, 6, 20, 11, 5, (4, 2), (2, 1), True),  # rectangular padding, dilation 1 along one axis
    (3, 3, 2, 9, 9, 3, 9, 9, False),  # dilation as large as the map: only the centre tap sees the input
    (1, 3, 4, 10, 12, (1, 3), (0, 4), 4, False),  # a non-square kernel
]


def _grads(fn, x, w, g):
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y = fn(x, w)
    return (y, *torch.autograd.grad(y, (x, w), g))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES)
def test_matches_torch_conv2d_and_its_gradients(case, dtype, any_channels):
    b, c, o, h, w, k, pad, dil, cl = case
    kh, kw = (k, k) if isinstance(k, int) else k
    torch.manual_seed(0)
    x = torch.randn(b, c, h, w, dtype=dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(o, c, kh, kw, dtype=dtype)
    g = torch.randn_like(F.conv2d(x, weight, None, 1, pad, dil))
    y, gx, gw = _grads(lambda a, v: dilated_conv2d(a, v, pad, dil), x, weight, g)
    y_ref, gx_ref, gw_ref = _grads(lambda a, v: F.conv2d(a, v, None, 1, pad, dil), x, weight, g)
    assert y.grad_fn is not None and "DilatedConv2d" in type(y.grad_fn).__name__
    # torch's own forward and input gradient, bit for bit; the weight gradient to float rounding
    assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, gw_ref, **tol)


@pytest.mark.parametrize("channels", [16, 24])
def test_fp32_weight_gradient_is_as_accurate_as_torchs(channels):
    # against a float64 reference, over 2 x 160 x 160 positions (several chunks): the error must not
    # grow with the reordered sums (one unchunked product per tap measured 15x torch's at 8 channels)
    torch.manual_seed(0)
    x = torch.randn(2, channels, 160, 160).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3) * 0.1
    g = torch.randn(2, channels, 160, 160)
    gw = _grads(lambda a, v: dilated_conv2d(a, v, 6, 6), x, weight, g)[2]
    gw_torch = _grads(lambda a, v: F.conv2d(a, v, None, 1, 6, 6), x, weight, g)[2]
    gw_64 = _grads(lambda a, v: F.conv2d(a, v, None, 1, 6, 6), x.double(), weight.double(), g.double())[2]
    err, err_torch = (gw.double() - gw_64).abs().max(), (gw_torch.double() - gw_64).abs().max()
    assert err <= 2 * err_torch, (err, err_torch)


def test_used_from_16_channels_on():
    torch.manual_seed(0)

    def kind(c):
        x, w = torch.randn(1, c, 10, 10), torch.randn(c, c, 3, 3, requires_grad=True)
        return type(dilated_conv2d(x, w, 2, 2).grad_fn).__name__

    assert "DilatedConv2d" in kind(16) and "DilatedConv2d" not in kind(8)


def test_gradcheck_float64(any_channels):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, v: dilated_conv2d(a, v, 2, 2), (x, w))


def test_weight_gradient_alone_when_the_input_needs_none(any_channels):
    torch.manual_seed(0)
    x, w = torch.randn(1, 3, 12, 12), torch.randn(4, 3, 3, 3, requires_grad=True)
    dilated_conv2d(x, w, 3, 3).square().sum().backward()
    w_ref = w.detach().clone().requires_grad_()
    F.conv2d(x, w_ref, None, 1, 3, 3).square().sum().backward()
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-4, atol=1e-4)


def test_plain_conv2d_where_the_faster_gradient_does_not_apply(any_channels):
    torch.manual_seed(0)
    x, w = torch.randn(1, 3, 12, 12), torch.randn(4, 3, 3, 3, requires_grad=True)

    def kind(y):
        return type(y.grad_fn).__name__ if y.grad_fn is not None else None

    assert "DilatedConv2d" not in kind(dilated_conv2d(x, w, 1, 1))  # dilation 1: torch's is as fast
    with torch.no_grad():
        y = dilated_conv2d(x, w, 3, 3)
    assert y.grad_fn is None and torch.equal(y, F.conv2d(x, w, None, 1, 3, 3))
    assert dilated_conv2d(x, w.detach(), 3, 3).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dilated_conv2d(x, w, 3, 3)
    assert y.dtype == torch.bfloat16 and "DilatedConv2d" not in kind(y)
