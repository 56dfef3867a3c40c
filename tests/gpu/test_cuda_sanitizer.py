"""compute-sanitizer memcheck, racecheck and synccheck on small CUDA scans (needs a GPU and the binary)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
CASE = Path(__file__).with_name("sanitizer_case.py")


def _sanitizer() -> str:
    for cand in (shutil.which("compute-sanitizer"),
                 os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "compute-sanitizer")):
        if cand and os.path.isfile(cand):
            return cand
    pytest.skip("compute-sanitizer not found (install the CUDA toolkit or set CUDA_HOME)")


@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "synccheck"])
def test_sanitizer_is_clean(tool):
    cmd = [_sanitizer(), "--tool", tool, "--error-exitcode", "99"]
    if tool == "memcheck":
        cmd += ["--leak-check", "no"]
    # Only our kernels matter; torch's own allocations and kernels stay in, they are expected to be clean.
    # PYTORCH_NO_CUDA_MEMORY_CACHING: every tensor its own cudaMalloc, so memcheck sees an access past its
    # end (inside the caching allocator's blocks it would land in other memory of the pool, unseen)
    proc = subprocess.run(cmd + [sys.executable, str(CASE)], capture_output=True, text=True, timeout=1800,
                          cwd=str(CASE.parents[2]), env={**os.environ, "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "sanitizer case done" in out, out[-6000:]
    summary = "RACECHECK SUMMARY: 0 hazards" if tool == "racecheck" else "ERROR SUMMARY: 0 errors"
    assert summary in out, out[-6000:]
