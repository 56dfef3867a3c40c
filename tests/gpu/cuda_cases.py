"""Inputs, float64 references and mamba-ssm's tolerances shared by the CUDA kernel tests.

Used on a GPU (test_cuda_kernels.py) and under the host emulation of the kernels
(test_cuda_emulation.py).  Inputs follow mamba-ssm's tests: u, B, C ~ N(0, 1), delta ~ U(0, 0.5),
A ~ -U(0, 0.5), D ~ N(0, 1), delta_bias ~ U(0, 0.5); u, delta, B, C in the tested dtype, A, D and
delta_bias ("weights") in float32.  The reference runs grainseg.ops.reference in float64 on the same
(rounded) inputs.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from grainseg.ops import reference
from grainseg.ops._checks import MAX_D_STATE  # noqa: F401 (re-exported for the test modules)
from grainseg.ops._scan_autograd import CUDA_CHECKPOINT_CHUNK

#: mamba-ssm's tolerances (rtol, atol) for the output; float64 is for exactness checks.
TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float32: (6e-4, 2e-3),
    torch.float16: (3e-3, 5e-3),
    torch.bfloat16: (3e-2, 5e-2),
    torch.float64: (1e-9, 1e-9),
}
#: (h, w) of the foundation issue and the VM-UNet stage shapes at 256 x 256 (channels, h, w).
FOUNDATION_HW = [(1, 1), (1, 7), (5, 3), (16, 16), (13, 64)]
VMUNET_STAGES = [(192, 64, 64), (384, 32, 32), (768, 16, 16), (1536, 8, 8)]
#: The CUDA kernels' checkpoint chunk (their tile; grainseg._C.cuda_checkpoint_chunk).
CUDA_CHUNK = CUDA_CHECKPOINT_CHUNK

INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def grad_tolerance(name: str, dtype: torch.dtype) -> Tuple[float, float]:
    """mamba-ssm's gradient tolerances: du x2, ddelta x5 / x10, weights (A, D, delta_bias) 1e-3 or more."""
    rtol, atol = TOLERANCES[dtype]
    if dtype == torch.float64:
        return rtol, atol
    rtolw, atolw = max(1e-3, rtol), max(1e-3, atol)
    return {
        "u": (rtol * 2, atol * 2),
        "delta": (rtol * 5, atol * 10),
        "B": (rtol, atol),
        "C": (rtol, atol),
        "A": (rtolw, atolw * 5),
        "D": (rtolw, atolw),
        "delta_bias": (rtolw, atolw),
    }[name]


def _make(shape, kind: str, dtype: torch.dtype, device, g: torch.Generator) -> Tensor:
    if kind == "normal":
        x = torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "delta":
        x = 0.5 * torch.rand(shape, generator=g, dtype=torch.float64)
    elif kind == "A":
        x = -0.5 * torch.rand(shape, generator=g, dtype=torch.float64)
    else:  # bias
        x = 0.5 * torch.rand(shape, generator=g, dtype=torch.float64)
    return x.to(dtype=dtype, device=device)


def ss2d_inputs(b: int, c: int, h: int, w: int, n: int, dtype: torch.dtype, device="cpu", seed: int = 0,
                with_D: bool = True, with_bias: bool = True, weight_dtype: Optional[torch.dtype] = None
                ) -> Dict[str, Optional[Tensor]]:
    """Arguments of ss2d_scan: u (b,c,h,w), delta (b,4,c,h,w), A (4,c,n), B, C (b,4,n,h,w), D, bias (4,c)."""
    g = torch.Generator().manual_seed(seed)
    wt = weight_dtype or (torch.float64 if dtype == torch.float64 else torch.float32)
    return dict(
        u=_make((b, c, h, w), "normal", dtype, device, g),
        delta=_make((b, 4, c, h, w), "delta", dtype, device, g),
        A=_make((4, c, n), "A", wt, device, g),
        B=_make((b, 4, n, h, w), "normal", dtype, device, g),
        C=_make((b, 4, n, h, w), "normal", dtype, device, g),
        D=_make((4, c), "normal", wt, device, g) if with_D else None,
        delta_bias=_make((4, c), "bias", wt, device, g) if with_bias else None,
    )


def selective_scan_inputs(batch: int, dim: int, L: int, n: int, groups_B: int, groups_C: int,
                          dtype: torch.dtype, device="cpu", seed: int = 0, delta_bias_scale: float = 1.0
                          ) -> Dict[str, Optional[Tensor]]:
    """Arguments of selective_scan with 4-D grouped B (batch, groups_B, n, L) and C."""
    g = torch.Generator().manual_seed(seed)
    wt = torch.float64 if dtype == torch.float64 else torch.float32
    return dict(
        u=_make((batch, dim, L), "normal", dtype, device, g),
        delta=_make((batch, dim, L), "delta", dtype, device, g),
        A=_make((dim, n), "A", wt, device, g),
        B=_make((batch, groups_B, n, L), "normal", dtype, device, g),
        C=_make((batch, groups_C, n, L), "normal", dtype, device, g),
        D=_make((dim,), "normal", wt, device, g),
        delta_bias=delta_bias_scale * _make((dim,), "bias", wt, device, g),
    )


def reference_with_grads(fn: Callable[..., Tensor], inputs: Dict[str, Optional[Tensor]], dy: Tensor,
                         **kwargs) -> Tuple[Tensor, Dict[str, Tensor]]:
    """fn(**inputs in float64, **kwargs) and the gradients of sum(fn * dy) for every tensor input."""
    leaves = {k: (v.detach().double().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    y = fn(**leaves, **kwargs)
    y.backward(dy.double())
    return y.detach(), {k: v.grad for k, v in leaves.items() if v is not None}


def assert_close(actual: Tensor, expected: Tensor, rtol: float, atol: float, what: str) -> None:
    """allclose in float64 with a message giving the worst element."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    err = (a - e).abs() - (atol + rtol * e.abs())
    worst = int(err.argmax())
    assert err.max() <= 0, (
        f"{what}: |actual - expected| exceeds atol {atol} + rtol {rtol} * |expected|: worst at flat index "
        f"{worst}: {a.flatten()[worst].item():.6g} vs {e.flatten()[worst].item():.6g} "
        f"(max abs error {(a - e).abs().max().item():.3g})"
    )


def check_against_reference(y: Tensor, grads: Sequence[Tensor], ref_y: Tensor, ref_grads: Dict[str, Tensor],
                            dtype: torch.dtype, what: str) -> None:
    """Output with TOLERANCES[dtype], each gradient with grad_tolerance (in INPUT_NAMES order; None or
    names missing from ref_grads are skipped)."""
    rtol, atol = TOLERANCES[dtype]
    assert_close(y, ref_y, rtol, atol, f"{what}: y")
    for name, g in zip(INPUT_NAMES, grads):
        if g is not None and name in ref_grads:
            assert_close(g, ref_grads[name], *grad_tolerance(name, dtype), f"{what}: d{name}")


def ss2d_reference(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> Tensor:
    """grainseg.ops.reference.ss2d_scan_ref with keyword arguments (for reference_with_grads)."""
    return reference.ss2d_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus)


def selective_scan_reference(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> Tensor:
    """grainseg.ops.reference.selective_scan_ref with keyword arguments (no z)."""
    return reference.selective_scan_ref(u, delta, A, B, C, D, None, delta_bias, delta_softplus)


def ss2d_fixture(reference_fixtures, device="cpu"):
    """The paper authors' SS2D module (eval mode, on `device`) and its io tensors (fixtures/reference/ss2d)."""
    import json

    from safetensors.torch import load_file

    from grainseg.layers import SS2D

    folder = reference_fixtures / "ss2d"
    cfg = json.loads((folder / "config.json").read_text())
    m = SS2D(cfg["d_model"], d_state=cfg["d_state"], d_conv=cfg["d_conv"], expand=cfg["expand"]).eval()
    m.load_state_dict(load_file(str(folder / "module.safetensors")), strict=True)
    io = load_file(str(folder / "io.safetensors"), device=str(device))
    return m.to(device), (io["input"], io["output"], io["cotangent"], io["grad_input"])


def tiny_vmunet_aspp_fixture(reference_fixtures, device="cpu"):
    """The authors' tiny VM-UNet-ASPP (train mode, on `device`) and its io (fixtures/reference/vmunet_aspp_tiny)."""
    import json

    from safetensors.torch import load_file

    from grainseg import VMUNetASPP

    folder = reference_fixtures / "vmunet_aspp_tiny"
    cfg = json.loads((folder / "config.json").read_text())
    model = VMUNetASPP(
        in_chans=cfg["in_chans"], num_classes=cfg["num_classes"], dims=cfg["dims"], depths=cfg["depths"],
        depths_decoder=cfg["depths_decoder"], d_state=cfg["d_state"], d_conv=cfg["d_conv"],
        expand=cfg["expand"], aspp_rates=cfg["aspp_rates"],
    )
    model.load_reference_state_dict(load_file(str(folder / "model.safetensors")))
    io = load_file(str(folder / "io.safetensors"), device=str(device))
    return model.to(device), (io["input"], io["output_logits"], io["cotangent"], io["grad_input"])


def assert_reproduces_fixture(model, io, tol: float = 1e-4) -> None:
    """model(input) == output and d(sum(output * cotangent))/d(input) == grad_input, within `tol` (max abs)."""
    x, output, cotangent, grad_input = io
    x = x.clone().requires_grad_(True)
    y = model(x)
    assert (y - output).abs().max() <= tol, f"output off by {(y - output).abs().max().item():.3g}"
    (y * cotangent).sum().backward()
    assert (x.grad - grad_input).abs().max() <= tol, f"grad_input off by {(x.grad - grad_input).abs().max().item():.3g}"
