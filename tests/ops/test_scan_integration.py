"""The scan ops inside larger programs: torch.compile(fullgraph=True) over both ops, and the paper
authors' SS2D fixture reproduced through grainseg.layers.SS2D on the fused kernel."""
from __future__ import annotations

import json

import pytest
import torch

import grainseg.ops as ops
from grainseg.ops import selective_scan, ss2d_scan

pytestmark = pytest.mark.skipif(ops.extension() is None, reason="grainseg._C is not built")


def _both_ops(u, delta, A, B, C, D, bias, z):
    """SS2D scan, then the 1-D scan over its flattened output (grouped B/C, z gating, bias, softplus)."""
    y = ss2d_scan(u, delta, A, B, C, D, bias, delta_softplus=True)
    b, c, h, w = y.shape
    seq = y.reshape(b, c, h * w)
    B1 = B[:, :2].reshape(b, 2, -1, h * w)  # 2 groups
    C1 = C[:, 0].reshape(b, -1, h * w)  # ungrouped 3-D
    return selective_scan(seq, seq.sigmoid(), A[0], B1, C1, D[0], z, bias[0], delta_softplus=True)


def test_torch_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    b, c, h, w, n = 2, 4, 5, 6, 4
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    inputs = [r(b, c, h, w), r(b, 4, c, h, w) * 0.5 - 1, -(torch.rand(4, c, n, generator=g) + 0.2),
              r(b, 4, n, h, w), r(b, 4, n, h, w), r(4, c), r(4, c) * 0.3, r(b, c, h * w)]
    eager = [t.clone().requires_grad_() for t in inputs]
    comp = [t.clone().requires_grad_() for t in inputs]
    y = _both_ops(*eager)
    y.square().sum().backward()
    compiled = torch.compile(_both_ops, fullgraph=True)
    y_c = compiled(*comp)
    y_c.square().sum().backward()
    torch.testing.assert_close(y_c, y, rtol=1e-5, atol=1e-5)
    for a, e in zip(comp, eager):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-4, atol=1e-4)


def test_ss2d_fixture_through_the_layer(reference_fixtures):
    """VM-UNet's SS2D (authors' weights, float64 reference scan) reproduced by our layer + fused kernel."""
    safetensors = pytest.importorskip("safetensors.torch")
    layers = pytest.importorskip("grainseg.layers.ss2d")
    d = reference_fixtures / "ss2d"
    cfg = json.loads((d / "config.json").read_text())
    layer = layers.SS2D(cfg["d_model"], d_state=cfg["d_state"], d_conv=cfg["d_conv"], expand=cfg["expand"])
    layer.load_state_dict(safetensors.load_file(str(d / "module.safetensors")))
    layer.eval()
    io = safetensors.load_file(str(d / "io.safetensors"))
    assert ops.backend() == "cpu"
    x = io["input"].clone().requires_grad_()
    out = layer(x)
    (out * io["cotangent"]).sum().backward()
    torch.testing.assert_close(out, io["output"], rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(x.grad, io["grad_input"], rtol=1e-4, atol=2e-5)
