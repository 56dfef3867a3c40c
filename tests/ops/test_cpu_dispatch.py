"""Runtime ISA dispatch of the CPU kernels: every variant this CPU runs (avx512, avx2, baseline in the
default build; native in a GRAINSEG_MARCH build) against the reference, and the GRAINSEG_CPU_CAPABILITY
override."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import grainseg.ops as ops
from grainseg.ops import selective_scan, ss2d_scan, use_cpu_capability
from tests.ops.test_scan_kernels import assert_close, check_against_reference, grads_of, selective_inputs, ss2d_inputs

pytestmark = pytest.mark.skipif(ops.extension() is None, reason="grainseg._C is not built")

VARIANTS = ops.cpu_capabilities()
COMPILED = list(ops.extension().compiled_cpu_capabilities()) if ops.extension() is not None else []


@pytest.fixture(params=VARIANTS)
def cpu_variant(request):
    """Runs the test with each kernel variant this CPU supports, restoring the one in use after."""
    with use_cpu_capability(request.param):
        assert ops.cpu_capability() == request.param
        yield request.param


# fp32 at n = 8 (AVX2 core), 16 (AVX-512 / AVX2 core), 32 (AVX-512 core), 48 (generic everywhere);
# fp64 and bf16 (generic core); L = 99 and 130 cross a 64-step checkpoint chunk.
@pytest.mark.parametrize(
    "b,c,hw,n,dtype",
    [(2, 5, (9, 11), 8, torch.float32), (1, 3, (9, 11), 16, torch.float32), (2, 3, (5, 13), 32, torch.float32),
     (1, 3, (9, 11), 48, torch.float32), (2, 3, (5, 7), 4, torch.float64), (1, 4, (5, 3), 16, torch.bfloat16)],
    ids=lambda v: str(v).replace("torch.", ""),
)
def test_ss2d_variant_matches_reference(cpu_variant, b, c, hw, n, dtype):
    check_against_reference(ss2d_scan, ss2d_inputs(b, c, *hw, n, dtype), dtype, delta_softplus=True)


@pytest.mark.parametrize("n", [8, 16])
def test_selective_scan_variant_matches_reference(cpu_variant, n):
    args = selective_inputs(2, 6, 130, n, 2, 3, torch.float32)
    check_against_reference(selective_scan, args, torch.float32, delta_softplus=True)


def test_variants_agree():
    """Every supported variant gives the same fp32 outputs and gradients (to fp32 rounding)."""
    args = ss2d_inputs(1, 4, 8, 16, 16, torch.float32)
    results = {}
    for v in VARIANTS:
        with use_cpu_capability(v):
            results[v] = grads_of(lambda **a: ss2d_scan(**a, delta_softplus=True), args)
    first, (y0, g0) = next(iter(results.items()))
    for v, (y, g) in results.items():
        assert_close(y, y0, torch.float32, f"y {v} vs {first}")
        for k in g0:
            assert_close(g[k], g0[k], torch.float32, f"d{k} {v} vs {first}")


def test_capability_reporting():
    assert VARIANTS, "the CPU runs none of the compiled variants"
    assert set(VARIANTS) <= set(COMPILED)
    if COMPILED == ["native"]:
        return
    assert COMPILED == ["avx512", "avx2", "baseline"]
    assert "baseline" in VARIANTS
    with use_cpu_capability("baseline"):
        assert ops.cpu_capability() == "baseline"


def _capability_in_child(value):
    env = {k: v for k, v in os.environ.items() if k != "GRAINSEG_CPU_CAPABILITY"}
    if value is not None:
        env["GRAINSEG_CPU_CAPABILITY"] = value
    code = "import grainseg.ops as o; print(o.cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_default_is_the_best_supported():
    r = _capability_in_child(None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == VARIANTS[0]


@pytest.mark.parametrize("value", VARIANTS)
def test_environment_override(value):
    r = _capability_in_child(value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == value


def test_environment_override_errors():
    r = _capability_in_child("sse9")
    assert r.returncode != 0
    assert "ValueError" in r.stderr and "unknown CPU kernel variant 'sse9'" in r.stderr, r.stderr
    for name in COMPILED:
        if name not in VARIANTS:  # a variant this CPU lacks (none on an AVX-512 machine)
            r = _capability_in_child(name)
            assert r.returncode != 0 and "which this CPU lacks" in r.stderr, r.stderr


def test_set_capability_errors_leave_the_variant():
    before = ops.cpu_capability()
    with pytest.raises(ValueError, match="unknown CPU kernel variant 'avx1024'"):
        ops.extension().set_cpu_capability("avx1024")
    with pytest.raises(ValueError):
        with use_cpu_capability("avx1024"):
            pass
    assert ops.cpu_capability() == before
