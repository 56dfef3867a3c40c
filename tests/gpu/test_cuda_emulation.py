"""The CUDA kernels' own source, run on CPU tensors under the host emulation of tests/gpu/emu.

No GPU needed: csrc/cuda/*.cuh, the four .cu entry points and the torch binding scan_binding_cuda.cpp are
compiled with g++ against cuda_emulation.h (threads are fibers, barriers and warp shuffles emulated,
shared memory poisoned with NaN, thread order shuffled between barriers).  This checks indexing, the
tiled scans, masking, checkpoints, reductions and the binding's bookkeeping; it says nothing about
speed, the GPU memory model or compiler-specific behaviour (see test_cuda_kernels.py for the GPU run).
The first run compiles the module (about a minute), later runs reuse it until a CUDA source changes;
hence ``slow`` (GRAINSEG_SLOW=1); .ci/check_cuda.sh runs it in CI.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from tests.gpu.cuda_cases import (
    CUDA_CHUNK,
    assert_reproduces_fixture,
    ss2d_fixture,
    tiny_vmunet_aspp_fixture,
    FOUNDATION_HW,
    INPUT_NAMES,
    TOLERANCES,
    assert_close,
    check_against_reference,
    reference_with_grads,
    selective_scan_inputs,
    selective_scan_reference,
    ss2d_inputs,
    ss2d_reference,
)
from grainseg.ops import reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emu():
    if shutil.which("ninja") is None or shutil.which("c++") is None:
        pytest.skip("the emulation build needs ninja and a C++ compiler")
    from tests.gpu.cuda_emulation import load_emulated_kernels

    try:
        return load_emulated_kernels()
    except FileNotFoundError as exc:  # no CUDA headers on this machine
        pytest.skip(str(exc))


def run(emu, op: str, inputs, dy, softplus=True):
    """Emulated forward and backward of `op` ("ss2d" or "selective_scan")."""
    args = [inputs[k] for k in INPUT_NAMES]
    y, ckpt = getattr(emu, f"{op}_fwd")(*args, softplus, CUDA_CHUNK)
    grads = getattr(emu, f"{op}_bwd")(dy, *args, softplus, ckpt, CUDA_CHUNK)
    return y, ckpt, grads


# (h, w) x dtype: every foundation (h, w), every tile configuration (L <= 128, 512, 1024 and two
# 2048-step tiles with a tail: 3 x 700), every dtype.
SS2D_CASES = [(hw, dt, bcn) for hw in FOUNDATION_HW for dt, bcn in
              [(torch.float64, (3, 3, 4)), (torch.float32, (1, 32 if hw[1] < 64 else 8, 16)),
               (torch.bfloat16, (3, 1, 1))]]
SS2D_CASES += [((16, 16), torch.float16, (1, 3, 4)), ((3, 700), torch.float64, (1, 1, 2)),
               ((3, 700), torch.float32, (1, 2, 1))]


@pytest.mark.parametrize("hw, dtype, bcn", SS2D_CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_ss2d_matches_reference(emu, hw, dtype, bcn):
    (h, w), (b, c, n) = hw, bcn
    inputs = ss2d_inputs(b, c, h, w, n, dtype, seed=h * 100 + w)
    dy = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(1)).to(dtype)
    y, ckpt, grads = run(emu, "ss2d", inputs, dy)
    assert y.dtype == dtype and ckpt.shape == (b, 4, c, (h * w + CUDA_CHUNK - 1) // CUDA_CHUNK, n)
    ref_y, ref_grads = reference_with_grads(ss2d_reference, inputs, dy)
    check_against_reference(y, grads, ref_y, ref_grads, dtype, f"ss2d {hw} {dtype}")
    for name, g in zip(INPUT_NAMES, grads):
        assert g.dtype == inputs[name].dtype and g.shape == inputs[name].shape, name


def test_ss2d_without_D_bias_or_softplus(emu):
    inputs = ss2d_inputs(2, 3, 5, 3, 4, torch.float64, seed=3, with_D=False, with_bias=False)
    dy = torch.randn(2, 3, 5, 3, dtype=torch.float64)
    y, _, grads = run(emu, "ss2d", inputs, dy, softplus=False)
    ref_y, ref_grads = reference_with_grads(ss2d_reference, inputs, dy, delta_softplus=False)
    check_against_reference(y, grads, ref_y, ref_grads, torch.float64, "ss2d no D / bias / softplus")
    # absent D / delta_bias still get (zero-input) gradients: dD = sum(dy * u), ddelta_bias = sum(ddelta)
    assert grads[5].shape == (4, 3) and grads[5].dtype == torch.float32
    torch.testing.assert_close(grads[6].double(), grads[1].sum((0, 3, 4)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("L", [1, 37, 130, 2100])
@pytest.mark.parametrize("groups", [(1, 1), (2, 4), (4, 2)])
def test_selective_scan_matches_reference(emu, L, groups):
    dtype = torch.float64 if L != 130 else torch.float32
    inputs = selective_scan_inputs(2 if L < 2000 else 1, 4, L, 3, *groups, dtype, seed=L)
    dy = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    y, ckpt, grads = run(emu, "selective_scan", inputs, dy)
    ref_y, ref_grads = reference_with_grads(selective_scan_reference, inputs, dy)
    check_against_reference(y, grads, ref_y, ref_grads, dtype, f"selective_scan L={L} groups={groups}")
    assert grads[3].shape == inputs["B"].shape and grads[4].shape == inputs["C"].shape


@pytest.mark.parametrize("L", [37, 1000, 2100])
def test_masked_tail_keeps_the_last_state_with_softplus_bias(emu, L):
    """Steps past L inside the last tile must not decay the state, even when softplus(0 + bias) > 0."""
    inputs = selective_scan_inputs(1, 2, L, 4, 1, 1, torch.float64, seed=5, delta_bias_scale=8.0)
    args = [inputs[k] for k in INPUT_NAMES]
    _, ckpt = emu.selective_scan_fwd(*args, True, CUDA_CHUNK)
    _, last = reference.selective_scan_ref(
        inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"], None,
        inputs["delta_bias"], True, return_last_state=True)
    assert_close(ckpt[:, :, -1], last, *TOLERANCES[torch.float64], "last state")


def test_results_do_not_depend_on_thread_schedule(emu):
    """Bitwise equal outputs whatever order the threads run in between barriers (no races, fixed-order sums)."""
    inputs = ss2d_inputs(2, 3, 9, 7, 4, torch.float32, seed=7)
    dy = torch.randn(2, 3, 9, 7)
    outs = []
    for seed in (1, 2, 3):
        emu.set_schedule_seed(seed)
        y, ckpt, grads = run(emu, "ss2d", inputs, dy)
        outs.append([y, ckpt, *grads])
    emu.set_schedule_seed(12345)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


def test_mixed_dtypes_and_non_contiguous_inputs(emu):
    inputs = ss2d_inputs(1, 2, 4, 6, 3, torch.float64, seed=11)
    dy = torch.randn(1, 2, 4, 6, dtype=torch.float64)
    ref_y, ref_grads = reference_with_grads(ss2d_reference, inputs, dy)
    mixed = dict(inputs)
    mixed["u"] = inputs["u"].float().transpose(2, 3).contiguous().transpose(2, 3)  # non-contiguous fp32
    mixed["delta"] = inputs["delta"].float()
    mixed["B"] = torch.stack([inputs["B"], inputs["B"]], dim=-1)[..., 0].float()  # position stride 2
    mixed["C"] = inputs["C"].float()
    mixed["A"] = inputs["A"].float()
    y, _, grads = run(emu, "ss2d", mixed, dy.float())
    assert y.dtype == torch.float32 and grads[2].dtype == torch.float32
    check_against_reference(y, grads, ref_y, ref_grads, torch.float32, "mixed / non-contiguous")


@pytest.mark.parametrize("slabs", [1, 2])
def test_backward_with_several_channels_per_block(emu, monkeypatch, slabs):
    """A small GRAINSEG_CUDA_BWD_BUFFER_BYTES makes each block sum dB / dC over several channels."""
    b, c, n, L = 2, 4, 3, 15
    per_slab = 2 * b * 4 * n * L * 8  # fp64 partial buffers of one slab for dB and dC
    monkeypatch.setenv("GRAINSEG_CUDA_BWD_BUFFER_BYTES", str(slabs * per_slab))
    inputs = ss2d_inputs(b, c, 3, 5, n, torch.float64, seed=13)
    dy = torch.randn(b, c, 3, 5, dtype=torch.float64)
    y, _, grads = run(emu, "ss2d", inputs, dy)
    ref_y, ref_grads = reference_with_grads(ss2d_reference, inputs, dy)
    check_against_reference(y, grads, ref_y, ref_grads, torch.float64, f"ss2d, {slabs} slab(s)")
    sel = selective_scan_inputs(b, c, 40, n, 2, 1, torch.float64, seed=14)
    dy = torch.randn(b, c, 40, dtype=torch.float64)
    y, _, grads = run(emu, "selective_scan", sel, dy)
    ref_y, ref_grads = reference_with_grads(selective_scan_reference, sel, dy)
    check_against_reference(y, grads, ref_y, ref_grads, torch.float64, f"selective_scan, {slabs} slab(s)")


def test_binding_rejects_a_chunk_other_than_the_tile(emu):
    inputs = ss2d_inputs(1, 1, 2, 2, 1, torch.float32)
    with pytest.raises(ValueError, match=f"chunk == {CUDA_CHUNK}"):
        emu.ss2d_fwd(*[inputs[k] for k in INPUT_NAMES], True, 64)


@pytest.fixture
def ops_on_emulated_kernels(emu, monkeypatch):
    """grainseg.ops calling the emulated CUDA binding for CPU tensors, with the CUDA checkpoint chunk:
    the exact Python path (custom ops, autograd, layers) that CUDA tensors take."""
    import grainseg.ops._backend as backend_module
    import grainseg.ops._scan_autograd as scan_autograd

    monkeypatch.setattr(backend_module, "_C", emu)
    monkeypatch.setattr(scan_autograd, "CPU_CHECKPOINT_CHUNK", CUDA_CHUNK)
    monkeypatch.setenv("GRAINSEG_BACKEND", "extension")


def test_ops_autograd_through_the_emulated_kernels(ops_on_emulated_kernels):
    import grainseg.ops as ops

    inputs = ss2d_inputs(2, 3, 6, 5, 4, torch.float32, seed=17)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    dy = torch.randn(2, 3, 6, 5)
    ops.ss2d_scan(**leaves).backward(dy)
    ref_y, ref_grads = reference_with_grads(ss2d_reference, inputs, dy)
    check_against_reference(ops.ss2d_scan(**inputs), [leaves[k].grad for k in INPUT_NAMES], ref_y, ref_grads,
                            torch.float32, "ss2d_scan op")

    sel = selective_scan_inputs(2, 4, 50, 3, 2, 2, torch.float32, seed=18)
    z = torch.randn(2, 4, 50)
    leaves = {k: v.clone().requires_grad_() for k, v in {**sel, "z": z}.items()}
    y, last = ops.selective_scan(**leaves, delta_softplus=True, return_last_state=True)
    y.backward(torch.ones_like(y))
    ref = {k: v.double().requires_grad_() for k, v in {**sel, "z": z}.items()}
    ref_y, ref_last = reference.selective_scan_ref(**ref, delta_softplus=True, return_last_state=True)
    ref_y.backward(torch.ones_like(ref_y))
    check_against_reference(y, [leaves[k].grad for k in INPUT_NAMES], ref_y, {k: ref[k].grad for k in INPUT_NAMES},
                            torch.float32, "selective_scan op")
    assert_close(leaves["z"].grad, ref["z"].grad, *TOLERANCES[torch.float32], "dz")
    assert_close(last, ref_last, *TOLERANCES[torch.float32], "last state")


def test_ss2d_layer_reproduces_the_authors_fixture_on_the_emulated_kernels(ops_on_emulated_kernels,
                                                                          reference_fixtures):
    model, io = ss2d_fixture(reference_fixtures)
    assert_reproduces_fixture(model, io)


def test_vmunet_aspp_reproduces_the_authors_fixture_on_the_emulated_kernels(ops_on_emulated_kernels,
                                                                            reference_fixtures):
    model, io = tiny_vmunet_aspp_fixture(reference_fixtures)
    assert_reproduces_fixture(model.eval(), io)
