"""The compiled CPU scan kernels (grainseg._C) against the pure-PyTorch reference: forward, every
gradient, gradcheck, the mamba-compatible op's options, edge cases, bad input and the backend switch."""
from __future__ import annotations

import math

import pytest
import torch

import grainseg.ops as ops
from grainseg.ops import reference, selective_scan, ss2d_scan, use_backend

pytestmark = pytest.mark.skipif(ops.extension() is None, reason="grainseg._C is not built")
MAX_D_STATE = ops.extension().max_d_state if ops.extension() is not None else None

TOL = {torch.float64: 1e-9, torch.float32: 2e-4, torch.bfloat16: 5e-2}


def assert_close(actual, expected, dtype, what=""):
    """max |actual - expected| <= tol * max(max |expected|, 1): a scale-aware check per dtype."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    a, e = actual.double(), expected.double()
    scale = max(e.abs().max().item(), 1.0) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} > {TOL[dtype]} * {scale:.3g}"


def ss2d_inputs(b, c, h, w, n, dtype=torch.float32, with_D=True, with_bias=True, seed=0):
    """Random SS2D arguments in a stable regime (dt ~ 0.1..1, A < 0), requiring grad."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    args = dict(
        u=r(b, c, h, w),
        delta=r(b, 4, c, h, w) * 0.5 - 1.0,
        A=-(torch.rand(4, c, n, generator=g) + 0.2),
        B=r(b, 4, n, h, w),
        C=r(b, 4, n, h, w),
        D=r(4, c) if with_D else None,
        delta_bias=r(4, c) * 0.3 if with_bias else None,
    )
    return {k: (v.to(dtype).requires_grad_() if v is not None else None) for k, v in args.items()}


def grads_of(fn, args, cotangent_seed=1):
    """Output of fn(**args) and the gradients of <output, cotangent> w.r.t. every tensor argument."""
    y = fn(**args)
    ct = torch.randn(y.shape, generator=torch.Generator().manual_seed(cotangent_seed)).to(y.dtype)
    names = [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    gs = torch.autograd.grad(y, [args[k] for k in names], ct)
    return y, dict(zip(names, gs))


def check_against_reference(fn, args, dtype, **kw):
    y, g = grads_of(lambda **a: fn(**a, **kw), args)
    with use_backend("reference"):
        y_ref, g_ref = grads_of(lambda **a: fn(**a, **kw), args)
    assert_close(y, y_ref, dtype, "y")
    for k in g_ref:
        assert_close(g[k], g_ref[k], dtype, f"d{k}")


# (h, w), batch, channels, n, dtype: every value of every axis appears at least once.
SS2D_CASES = [
    ((1, 1), 1, 1, 1, torch.float32),
    ((1, 7), 3, 3, 4, torch.float64),
    ((5, 3), 1, 32, 16, torch.bfloat16),
    ((16, 16), 3, 3, 16, torch.float32),
    ((13, 64), 1, 32, 4, torch.float32),
    ((13, 64), 3, 1, 1, torch.float64),
    ((16, 16), 1, 32, 1, torch.bfloat16),
    ((5, 3), 3, 3, 16, torch.float64),
]


@pytest.mark.parametrize("hw,b,c,n,dtype", SS2D_CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_ss2d_matches_reference(hw, b, c, n, dtype):
    check_against_reference(ss2d_scan, ss2d_inputs(b, c, *hw, n, dtype), dtype, delta_softplus=True)


@pytest.mark.parametrize("with_D,with_bias,softplus", [(False, False, False), (True, False, False), (False, True, True)])
def test_ss2d_optional_arguments(with_D, with_bias, softplus):
    args = ss2d_inputs(2, 3, 6, 5, 4, torch.float64, with_D, with_bias)
    if not softplus:  # keep dt positive without softplus
        args["delta"] = (args["delta"].detach().abs() * 0.3).requires_grad_()
    check_against_reference(ss2d_scan, args, torch.float64, delta_softplus=softplus)


def test_ss2d_gradcheck_fp64():
    args = ss2d_inputs(2, 2, 3, 4, 3, torch.float64)
    names = list(args)
    fn = lambda *a: ss2d_scan(*a, delta_softplus=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(args[k] for k in names), eps=1e-6, atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------------------- mamba-compatible op


def selective_inputs(batch, dim, L, n, gB, gC, dtype=torch.float64, seed=0):
    """selective_scan arguments; gB / gC = None gives 3-D (ungrouped) B / C."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    args = dict(
        u=r(batch, dim, L),
        delta=r(batch, dim, L) * 0.5 - 1.0,
        A=-(torch.rand(dim, n, generator=g) + 0.2),
        B=r(batch, n, L) if gB is None else r(batch, gB, n, L),
        C=r(batch, n, L) if gC is None else r(batch, gC, n, L),
        D=r(dim),
        z=r(batch, dim, L),
        delta_bias=r(dim) * 0.3,
    )
    return {k: v.to(dtype).requires_grad_() for k, v in args.items()}


@pytest.mark.parametrize(
    "gB,gC,softplus,drop",
    [(None, None, True, ()), (2, 3, True, ()), (6, 1, False, ("D", "delta_bias")), (1, None, True, ("z",))],
)
def test_selective_scan_matches_reference(gB, gC, softplus, drop):
    args = selective_inputs(2, 6, 70, 4, gB, gC)  # L = 70 crosses a checkpoint chunk
    for k in drop:
        args[k] = None
    if not softplus:
        args["delta"] = (args["delta"].detach().abs() * 0.3).requires_grad_()
    check_against_reference(selective_scan, args, torch.float64, delta_softplus=softplus)


def test_selective_scan_fp32_and_last_state():
    args = selective_inputs(3, 4, 130, 16, 2, 2, torch.float32)
    y, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    with use_backend("reference"):
        y_ref, last_ref = selective_scan(**args, delta_softplus=True, return_last_state=True)
    assert_close(y, y_ref, torch.float32, "y")
    assert_close(last, last_ref, torch.float32, "last_state")


def test_selective_scan_gradcheck_fp64():
    args = selective_inputs(2, 4, 9, 3, 2, None)
    names = list(args)
    fn = lambda *a: selective_scan(*a, delta_softplus=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(args[k] for k in names), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_ss2d_equals_materialised_1d_path():
    """The fused op and "four reordered copies + the 1-D kernel + merge" agree (both on the extension)."""
    args = ss2d_inputs(2, 4, 9, 7, 8, torch.float64)
    y = ss2d_scan(**args)
    y_mat = reference.ss2d_scan_ref(**args, delta_softplus=True, scan=selective_scan)
    assert_close(y, y_mat, torch.float64, "y")


# ------------------------------------------------------------------------- kernel-level properties


def _detached(args):
    return [a.detach() if a is not None else None for a in args.values()]


def test_checkpoint_chunk_does_not_change_results():
    """Any chunk gives the same y and gradients; ckpt holds the state after each chunk's last step."""
    C_ = ops.extension()
    u, delta, A, B, C, D, bias = _detached(ss2d_inputs(2, 3, 7, 9, 4, torch.float64))
    y64, ck64 = C_.ss2d_fwd(u, delta, A, B, C, D, bias, True, 64)
    dy = torch.randn_like(y64)
    g64 = C_.ss2d_bwd(dy, u, delta, A, B, C, D, bias, True, ck64, 64)
    for chunk in (1, 5, 63):
        y, ck = C_.ss2d_fwd(u, delta, A, B, C, D, bias, True, chunk)
        assert ck.shape == (2, 4, 3, math.ceil(63 / chunk), 4) and ck.dtype == torch.float64
        torch.testing.assert_close(y, y64, rtol=0, atol=1e-12)
        torch.testing.assert_close(ck[:, :, :, -1], ck64[:, :, :, -1], rtol=0, atol=1e-12)
        for a, b in zip(C_.ss2d_bwd(dy, u, delta, A, B, C, D, bias, True, ck, chunk), g64):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [8, 16, 32, 48, 64])
def test_fp32_state_sizes(n):
    """fp32 at n = 8, 16, 32, 64 (the explicit SIMD cores where the build has them: AVX2 for 8 and, without
    AVX-512, 16; AVX-512 for 16, 32, 64) and 48 (the generic loops); L = 99 is one full 64-step chunk and
    a 35-step tail."""
    args = ss2d_inputs(2, 5, 9, 11, n, torch.float32)
    check_against_reference(ss2d_scan, args, torch.float32, delta_softplus=True)


def test_fp32_chunk_tails_agree():
    """fp32, n = 16: chunks of 1, 5, 17 and 63 steps (every tail length of the per-step sums) agree
    with the default 64 to rounding."""
    C_ = ops.extension()
    u, delta, A, B, C, D, bias = _detached(ss2d_inputs(1, 6, 9, 13, 16, torch.float32))
    y64, ck64 = C_.ss2d_fwd(u, delta, A, B, C, D, bias, True, 64)
    dy = torch.randn_like(y64)
    g64 = C_.ss2d_bwd(dy, u, delta, A, B, C, D, bias, True, ck64, 64)
    for chunk in (1, 5, 17, 63):
        y, ck = C_.ss2d_fwd(u, delta, A, B, C, D, bias, True, chunk)
        torch.testing.assert_close(y, y64, rtol=1e-5, atol=1e-5)
        for a, b in zip(C_.ss2d_bwd(dy, u, delta, A, B, C, D, bias, True, ck, chunk), g64):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw,c,n,dtype", [((20, 72), 3, 16, torch.float32), ((20, 36), 2, 16, torch.float64),
                                         ((24, 24), 2, 32, torch.float32)])
def test_large_grid_backward_matches_reference(hw, c, n, dtype):
    """Grids whose step rows per channel (B, C, dB, dC of the 4 directions) exceed 1 MiB run the backward
    direction-major, with the column-major lanes on transposed planes (kBwdRowsCacheBytes in
    scan_cpu_kernel.h): every gradient against the reference, on non-square grids, and the same bits for
    1 and 2 threads."""
    assert 4 * 4 * hw[0] * hw[1] * n * (8 if dtype == torch.float64 else 4) > 2 ** 20
    args = ss2d_inputs(2, c, *hw, n, dtype)
    check_against_reference(ss2d_scan, args, dtype, delta_softplus=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, g1 = grads_of(ss2d_scan, args)
        torch.set_num_threads(2)
        y2, g2 = grads_of(ss2d_scan, args)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(y1, y2) and all(torch.equal(g1[k], g2[k]) for k in g1)


def test_backward_is_deterministic_across_runs_and_threads():
    args = ss2d_inputs(2, 24, 12, 10, 8, torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            results.append(grads_of(ss2d_scan, args))
    finally:
        torch.set_num_threads(before)
    (y0, g0), *rest = results
    for y, g in rest:
        assert torch.equal(y, y0)
        for k in g0:
            assert torch.equal(g[k], g0[k]), f"d{k} differs between runs"


def test_non_contiguous_inputs():
    args = ss2d_inputs(2, 3, 5, 6, 4, torch.float64)
    base = {k: v.detach() for k, v in args.items()}
    # Same values, other memory layouts: transposed spatial dims, channel-last, strided slices.
    nc = dict(
        u=base["u"].transpose(2, 3).contiguous().transpose(2, 3),
        delta=base["delta"].permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3),
        A=torch.stack([base["A"], base["A"]], dim=-1)[..., 0],
        B=base["B"].permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2),
        C=base["C"],
        D=base["D"].t().contiguous().t(),
        delta_bias=base["delta_bias"],
    )
    assert not nc["u"].is_contiguous() and not nc["delta"].is_contiguous() and not nc["A"].is_contiguous()
    nc = {k: v.requires_grad_() for k, v in nc.items()}
    y, g = grads_of(ss2d_scan, args)
    y_nc, g_nc = grads_of(ss2d_scan, nc)
    assert_close(y_nc, y, torch.float64, "y")
    for k in g:
        assert_close(g_nc[k], g[k], torch.float64, f"d{k}")


def test_mixed_dtypes_follow_the_reference():
    args = ss2d_inputs(1, 3, 4, 5, 4, torch.float32)
    args["u"] = args["u"].detach().bfloat16().requires_grad_()
    args["B"] = args["B"].detach().double().requires_grad_()
    y, g = grads_of(ss2d_scan, args)
    assert y.dtype == torch.bfloat16 and g["u"].dtype == torch.bfloat16 and g["B"].dtype == torch.float64
    with use_backend("reference"):
        y_ref, g_ref = grads_of(ss2d_scan, args)
    assert_close(y, y_ref, torch.bfloat16, "y")
    for k in g:
        assert_close(g[k].float(), g_ref[k].float(), torch.bfloat16, f"d{k}")


@pytest.mark.parametrize("shape", [(0, 3, 4, 5), (2, 3, 0, 5), (2, 3, 4, 0)])
def test_empty_inputs(shape):
    b, c, h, w = shape
    args = ss2d_inputs(b, c, h, w, 4, torch.float32)
    y = ss2d_scan(**args)
    assert y.shape == shape
    y.sum().backward()
    assert args["u"].grad.shape == shape and args["A"].grad.abs().sum() == 0
    y1 = selective_scan(torch.zeros(2, 3, 0), torch.zeros(2, 3, 0), -torch.ones(3, 4), torch.zeros(2, 4, 0),
                        torch.zeros(2, 4, 0), return_last_state=True)
    assert y1[0].shape == (2, 3, 0) and y1[1].shape == (2, 3, 4)


def test_nan_passes_through():
    args = {k: (v.detach() if v is not None else None) for k, v in ss2d_inputs(1, 2, 4, 4, 4).items()}
    args["u"][0, 0, 1, 2] = float("nan")
    args["delta"][0, 1, 1, 0, 0] = float("nan")
    y = ss2d_scan(**args)
    with use_backend("reference"):
        y_ref = ss2d_scan(**args)
    assert torch.isnan(y).any()
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_positive_A_is_allowed():
    args = ss2d_inputs(1, 2, 3, 4, 4, torch.float64)
    args["A"] = (args["A"].detach().abs() * 0.5).requires_grad_()
    check_against_reference(ss2d_scan, args, torch.float64, delta_softplus=True)


def test_large_state_size():
    args = ss2d_inputs(1, 2, 2, 3, MAX_D_STATE, torch.float64)
    check_against_reference(ss2d_scan, args, torch.float64, delta_softplus=True)


# ------------------------------------------------------------------------------------- bad input


def _raw_args(**override):
    args = {k: v.detach() for k, v in ss2d_inputs(1, 2, 3, 4, 4).items()}
    args.update(override)
    return args


@pytest.mark.parametrize(
    "override,match",
    [
        (dict(u=torch.randn(2, 3, 4)), "'u' must have shape"),
        (dict(A=torch.randn(4, 2)), "'A' must have shape"),
        (dict(delta=torch.randn(1, 4, 2, 3, 5)), "'delta' must have shape"),
        (dict(B=torch.randn(1, 3, 4, 3, 4)), "'B' must have shape"),
        (dict(C=torch.randn(1, 4, 4, 4, 3)), "'C' must have shape"),
        (dict(D=torch.randn(2)), "'D' must have shape"),
        (dict(delta_bias=torch.randn(4, 3)), "'delta_bias' must have shape"),
        (dict(A=-torch.rand(4, 2, MAX_D_STATE + 1), B=torch.randn(1, 4, MAX_D_STATE + 1, 3, 4),
              C=torch.randn(1, 4, MAX_D_STATE + 1, 3, 4)), "state size N"),
        (dict(u=torch.ones(1, 2, 3, 4, dtype=torch.int64)), "'u' must be a"),
        (dict(B=torch.ones(1, 4, 4, 3, 4, dtype=torch.int32)), "'B' must be a"),
        (dict(C=torch.randn(1, 4, 4, 3, 4, device="meta")), "one device"),
    ],
)
def test_bad_input_raises_value_error(override, match):
    args = _raw_args(**override)
    with pytest.raises(ValueError, match=match):  # the Python checks
        ss2d_scan(**args)
    with pytest.raises(ValueError, match=match):  # the binding checks again
        ops.extension().ss2d_fwd(*args.values(), True, 64)


def test_binding_rejects_bad_backward_and_chunk():
    C_ = ops.extension()
    a = list(_raw_args().values())
    y, ck = C_.ss2d_fwd(*a, True, 64)
    with pytest.raises(ValueError, match="'chunk'"):
        C_.ss2d_fwd(*a, True, 0)
    with pytest.raises(ValueError, match="'ckpt'"):
        C_.ss2d_bwd(y, *a, True, ck[..., :2], 64)
    with pytest.raises(ValueError, match="'ckpt'"):
        C_.ss2d_bwd(y, *a, True, ck.double(), 64)
    with pytest.raises(ValueError, match="'dy'"):
        C_.ss2d_bwd(y[:, :1], *a, True, ck, 64)
    sa = [torch.randn(1, 4, 5), torch.randn(1, 4, 5), -torch.rand(4, 2), torch.randn(1, 3, 2, 5),
          torch.randn(1, 1, 2, 5), None, None]
    with pytest.raises(ValueError, match="'B' has 3 groups"):
        C_.selective_scan_fwd(*sa, False, 64)
    with pytest.raises(ValueError, match="must have shape"):
        selective_scan(torch.randn(1, 4, 5), torch.randn(1, 4, 6), -torch.rand(4, 2), torch.randn(1, 2, 5),
                       torch.randn(1, 2, 5))
    meta = [t.to("meta") if t is not None else None for t in sa]
    meta[3] = torch.randn(1, 1, 2, 5, device="meta")
    with pytest.raises(ValueError, match="no kernels for device meta"):
        C_.selective_scan_fwd(*meta, False, 64)


def test_kernel_limits_come_from_the_extension():
    """grainseg.ops reads the state-size cap and the checkpoint chunks from grainseg._C, and the values a
    pure-Python install falls back on are the same."""
    from grainseg.ops import _backend, _checks, _scan_autograd

    C_ = ops.extension()
    assert (_checks.MAX_D_STATE, _scan_autograd.CPU_CHECKPOINT_CHUNK, _scan_autograd.CUDA_CHECKPOINT_CHUNK) == (
        C_.max_d_state, C_.cpu_checkpoint_chunk, C_.cuda_checkpoint_chunk)
    assert {name: getattr(C_, name) for name in _backend.LIMITS_WITHOUT_EXTENSION} == _backend.LIMITS_WITHOUT_EXTENSION
    with pytest.raises(ValueError, match="kernel_limit: name must be one of"):
        _backend.kernel_limit("chunk")


# -------------------------------------------------------------------------------- backend switch


def test_backend_switch(monkeypatch):
    assert ops.backend() == "cpu"
    args = {k: v.detach() for k, v in ss2d_inputs(1, 2, 3, 4, 4, torch.float64).items()}
    calls = []
    real = ops.extension()

    class Spy:  # counts kernel calls, delegates everything to the real module
        def __getattr__(self, name):
            return getattr(real, name)

        def ss2d_fwd(self, *a):
            calls.append(1)
            return real.ss2d_fwd(*a)

    from grainseg.ops import _backend

    monkeypatch.setattr(_backend, "_C", Spy())
    y_ext = ss2d_scan(**args)
    assert calls == [1]
    monkeypatch.setenv("GRAINSEG_BACKEND", "reference")
    assert ops.backend() == "reference"
    y_env = ss2d_scan(**args)
    assert calls == [1]
    monkeypatch.setenv("GRAINSEG_BACKEND", "auto")
    with use_backend("reference"):
        assert ops.backend() == "reference"
        y_ctx = ss2d_scan(**args)
    assert calls == [1] and ops.backend() == "cpu"
    torch.testing.assert_close(y_env, y_ext)
    torch.testing.assert_close(y_ctx, y_ext)
    monkeypatch.setenv("GRAINSEG_BACKEND", "bogus")
    with pytest.raises(ValueError, match="GRAINSEG_BACKEND"):
        ops.backend()
