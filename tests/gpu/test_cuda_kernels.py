"""CUDA kernels of ss2d_scan and selective_scan against the float64 reference (needs a GPU).

mamba-ssm's tolerances (cuda_cases.TOLERANCES / grad_tolerance), forward and every gradient, at the
foundation shapes and the VM-UNet stage shapes; CPU extension vs CUDA; bitwise determinism; the masked
softplus-with-bias tail; fp64 gradcheck; the small-memory backward path.  Skipped without CUDA; fails
(does not skip) when a GPU is there but grainseg._C was built without its CUDA kernels.
"""
from __future__ import annotations

import pytest
import torch

import grainseg.ops as ops
from tests.gpu.cuda_cases import (
    CUDA_CHUNK,
    FOUNDATION_HW,
    MAX_D_STATE,
    INPUT_NAMES,
    TOLERANCES,
    VMUNET_STAGES,
    assert_close,
    check_against_reference,
    reference_with_grads,
    selective_scan_inputs,
    ss2d_inputs,
    ss2d_reference,
)
from grainseg.ops import reference

pytestmark = pytest.mark.gpu
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DEV = "cuda"


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    assert ops.extension_has_cuda(), (
        "grainseg._C has no CUDA kernels: rebuild with a CUDA torch and nvcc "
        "(pip install --no-build-isolation -e .) to test them"
    )
    assert ops.backend(DEV) == "cuda"


def run_op(fn, inputs, dy, **kwargs):
    """fn(**inputs, **kwargs) with autograd; returns y and the gradients in INPUT_NAMES order (None if absent)."""
    leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    y = fn(**leaves, **kwargs)
    y.backward(dy)
    return y.detach(), [leaves[k].grad if leaves.get(k) is not None else None for k in INPUT_NAMES]


def check_ss2d(b, c, h, w, n, dtype, seed=0, **kwargs):
    inputs = ss2d_inputs(b, c, h, w, n, dtype, device=DEV, seed=seed, **kwargs)
    dy = torch.randn(b, c, h, w, device=DEV, generator=torch.Generator(DEV).manual_seed(seed + 1)).to(dtype)
    y, grads = run_op(ops.ss2d_scan, inputs, dy)
    ref_y, ref_grads = reference_with_grads(ss2d_reference, inputs, dy)
    check_against_reference(y, grads, ref_y, ref_grads, dtype, f"ss2d b{b} c{c} {h}x{w} n{n} {dtype}")


@pytest.mark.parametrize("bcn", [(1, 1, 1), (3, 3, 4), (1, 32, 16), (3, 32, 16)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("hw", FOUNDATION_HW, ids=str)
def test_ss2d_foundation_shapes(hw, dtype, bcn):
    check_ss2d(*bcn[:2], *hw, bcn[2], dtype, seed=hw[0] * 100 + hw[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("stage", VMUNET_STAGES, ids=str)
def test_ss2d_vmunet_stage_shapes(stage, dtype):
    c, h, w = stage
    check_ss2d(1, c, h, w, 16, dtype, seed=c)


def test_ss2d_without_D_and_bias_and_multi_tile():
    check_ss2d(2, 5, 50, 47, 8, torch.float32, with_D=False, with_bias=False)  # 2350 steps: two tiles


@pytest.mark.parametrize("L", [1, 8, 128, 372, 1024, CUDA_CHUNK, CUDA_CHUNK + 1, 2 * CUDA_CHUNK, 5000])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_selective_scan_like_mamba(L, dtype):
    """The mamba-compatible op through the public API: grouped or 3-D B / C, z gate, last state."""
    groups = (1, 1) if L % 2 else (2, 4)
    inputs = selective_scan_inputs(2, 8, L, 16, *groups, dtype, device=DEV, seed=L)
    if groups == (1, 1):
        inputs["B"], inputs["C"] = inputs["B"][:, 0], inputs["C"][:, 0]  # mamba's 3-D layout
    z = torch.randn(2, 8, L, device=DEV, generator=torch.Generator(DEV).manual_seed(3)).to(dtype)
    dy = torch.randn(2, 8, L, device=DEV, generator=torch.Generator(DEV).manual_seed(4)).to(dtype)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in {**inputs, "z": z}.items()}
    y, last = ops.selective_scan(**leaves, delta_softplus=True, return_last_state=True)
    y.backward(dy)
    ref = {k: v.detach().double().requires_grad_() for k, v in {**inputs, "z": z}.items()}
    ref_y, ref_last = reference.selective_scan_ref(**ref, delta_softplus=True, return_last_state=True)
    ref_y.backward(dy.double())
    what = f"selective_scan L={L} {dtype} groups={groups}"
    check_against_reference(y, [leaves[k].grad for k in INPUT_NAMES], ref_y,
                            {k: ref[k].grad for k in INPUT_NAMES}, dtype, what)
    rtol, atol = TOLERANCES[dtype]
    assert_close(leaves["z"].grad, ref["z"].grad, rtol, atol, f"{what}: dz")
    assert_close(last, ref_last, rtol, atol, f"{what}: last state")


@pytest.mark.parametrize("L", [37, 1000, 2100, 4097])
def test_masked_tail_with_softplus_bias_keeps_the_last_state(L):
    """Steps past L in the last tile must be identities even when softplus(delta_bias) > 0 (mamba-ssm
    pads with delta = 0, whose softplus(0 + bias) decays the state)."""
    inputs = selective_scan_inputs(1, 4, L, 16, 1, 1, torch.float32, device=DEV, seed=L, delta_bias_scale=8.0)
    _, last = ops.selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    ref = {k: v.double() for k, v in inputs.items()}
    _, ref_last = reference.selective_scan_ref(**ref, delta_softplus=True, return_last_state=True)
    assert_close(last, ref_last, *TOLERANCES[torch.float32], f"last state L={L}")


@pytest.mark.parametrize("op", ["ss2d", "selective_scan"])
def test_cuda_agrees_with_cpu_extension(op):
    if op == "ss2d":
        inputs = ss2d_inputs(2, 8, 13, 64, 16, torch.float32, seed=21)
        dy, fn = torch.randn(2, 8, 13, 64), ops.ss2d_scan
    else:
        inputs = selective_scan_inputs(2, 8, 3000, 16, 2, 4, torch.float32, seed=22)
        dy, fn = torch.randn(2, 8, 3000), ops.selective_scan
        fn = lambda **kw: ops.selective_scan(**kw, delta_softplus=True)  # noqa: E731
    y_cpu, g_cpu = run_op(fn, inputs, dy)
    on_gpu = {k: (v.to(DEV) if v is not None else None) for k, v in inputs.items()}
    y_gpu, g_gpu = run_op(fn, on_gpu, dy.to(DEV))
    rtol, atol = TOLERANCES[torch.float32]
    assert_close(y_gpu, y_cpu, rtol, atol, f"{op}: y")
    for name, a, b in zip(INPUT_NAMES, g_gpu, g_cpu):
        assert_close(a, b, rtol, atol, f"{op}: d{name}")


def test_results_are_bitwise_deterministic():
    for inputs, dy, fn in (
        (ss2d_inputs(2, 64, 40, 60, 16, torch.bfloat16, device=DEV, seed=5),
         torch.randn(2, 64, 40, 60, device=DEV, dtype=torch.bfloat16), ops.ss2d_scan),
        (selective_scan_inputs(2, 64, 3000, 16, 2, 2, torch.float32, device=DEV, seed=6),
         torch.randn(2, 64, 3000, device=DEV), ops.selective_scan),
    ):
        first = run_op(fn, inputs, dy)
        again = run_op(fn, inputs, dy)
        assert torch.equal(first[0], again[0])
        for a, b in zip(first[1], again[1]):
            assert (a is None and b is None) or torch.equal(a, b)


def test_gradcheck_fp64():
    inputs = ss2d_inputs(1, 2, 3, 4, 3, torch.float64, device=DEV, seed=8)
    args = tuple(inputs[k].requires_grad_() for k in INPUT_NAMES)
    assert torch.autograd.gradcheck(lambda *a: ops.ss2d_scan(*a), args, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("budget", ["1", "100000"])
def test_small_backward_buffer_budget(monkeypatch, budget):
    """GRAINSEG_CUDA_BWD_BUFFER_BYTES trades memory for blocks (several channels per block); same results."""
    monkeypatch.setenv("GRAINSEG_CUDA_BWD_BUFFER_BYTES", budget)
    check_ss2d(2, 12, 20, 30, 16, torch.float32, seed=9)


def test_largest_state_uses_the_big_shared_memory_path():
    check_ss2d(1, 2, 40, 60, MAX_D_STATE, torch.float64, seed=10)  # 2400 steps, n = 256, > 48 KiB shared memory
