"""SS2D against the paper authors' module (fixture), shapes, init and argument checks."""
from __future__ import annotations

import json
import math

import pytest
import torch

from grainseg.layers import SS2D
from grainseg.ops import reference


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_ss2d_matches_reference_fixture(reference_fixtures, backend):
    from safetensors.torch import load_file

    from grainseg.ops import use_backend

    folder = reference_fixtures / "ss2d"
    cfg = json.loads((folder / "config.json").read_text())
    m = SS2D(cfg["d_model"], d_state=cfg["d_state"], d_conv=cfg["d_conv"], expand=cfg["expand"]).eval()
    m.load_state_dict(load_file(str(folder / "module.safetensors")), strict=True)
    io = load_file(str(folder / "io.safetensors"))
    x = io["input"].clone().requires_grad_(True)
    with use_backend(backend):
        y = m(x)
        assert (y - io["output"]).abs().max() <= 1e-4
        (y * io["cotangent"]).sum().backward()
    assert (x.grad - io["grad_input"]).abs().max() <= 1e-4


def _materialised_ss2d(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """The reference's way: four reordered copies, x_proj on each, scan, merge (no fused op)."""
    b, h, w, _ = x.shape
    K, D, N, R = 4, m.d_inner, m.d_state, m.dt_rank
    xi, z = m.in_proj(x).chunk(2, dim=-1)
    xi = torch.nn.functional.silu(m.conv2d(xi.permute(0, 3, 1, 2)))
    xs = reference.cross_scan(xi)  # (b, 4, D, L)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, m.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, m.dt_projs_weight)
    ys = reference.selective_scan_ref(
        xs.reshape(b, K * D, -1), dts.reshape(b, K * D, -1), -torch.exp(m.A_logs), Bs, Cs, m.Ds,
        delta_bias=m.dt_projs_bias.reshape(-1), delta_softplus=True,
    )
    y = reference.cross_merge(ys.reshape(b, K, D, -1), h, w).permute(0, 2, 3, 1)
    return m.out_proj(m.out_norm(y) * torch.nn.functional.silu(z))


def test_ss2d_equals_materialised_four_direction_scan():
    torch.manual_seed(0)
    m = SS2D(8, d_state=4).eval()
    x = torch.randn(2, 5, 6, 8)
    torch.testing.assert_close(m(x), _materialised_ss2d(m, x), rtol=1e-4, atol=1e-5)


def test_ss2d_shapes_and_init():
    m = SS2D(40, d_state=6, expand=2)
    assert m.dt_rank == math.ceil(40 / 16) == 3
    assert m.x_proj_weight.shape == (4, 3 + 12, 80)
    assert m.dt_projs_weight.shape == (4, 80, 3) and m.dt_projs_bias.shape == (4, 80)
    assert m.A_logs.shape == (320, 6) and m.Ds.shape == (320,)
    torch.testing.assert_close(m.A_logs[5], torch.log(torch.arange(1.0, 7.0)))
    assert torch.equal(m.Ds, torch.ones(320))
    dt = torch.nn.functional.softplus(m.dt_projs_bias)  # initial step sizes lie in [dt_min, dt_max]
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert m.in_proj.bias is None and m.out_proj.bias is None
    assert m(torch.randn(1, 3, 4, 40)).shape == (1, 3, 4, 40)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(d_model=0), "d_model"), (dict(d_model=8, d_state=0), "d_state"), (dict(d_model=8, d_conv=2), "d_conv"),
     (dict(d_model=8, expand=-1), "expand"), (dict(d_model=8, dt_rank=0), "dt_rank")],
)
def test_ss2d_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SS2D(**kwargs)


def test_ss2d_rejects_wrong_input_layout():
    with pytest.raises(ValueError, match="batch, height, width, 8"):
        SS2D(8)(torch.randn(1, 8, 4, 4))
