"""keep_freed_memory: glibc keeps freed tensors for reuse (no fresh pages per step), opt-out by env."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import resource, sys
from grainseg._allocator import keep_freed_memory
import torch
kept = keep_freed_memory()
assert keep_freed_memory() == kept  # idempotent
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # two 16 MB activations freed at the end of a step, as a training step frees its tensors
    x = torch.empty(4 << 20); y = torch.empty(4 << 20); x.fill_(1.0); y.fill_(1.0); del y, x
for _ in range(3):  # warm: the heap grows once
    step()
f0 = faults()
for _ in range(10):  # glibc's default trims the freed top of the heap: 8192 fresh pages a step
    step()
print(int(kept), faults() - f0)
"""


def _probe(env_value):
    import os

    env = dict(os.environ)
    env.pop("GRAINSEG_MALLOC", None)
    if env_value is not None:
        env["GRAINSEG_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    kept, faults = out.stdout.split()
    return bool(int(kept)), int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_tensors_are_reused_instead_of_faulting_fresh_pages():
    kept, faults = _probe(None)
    assert kept and faults < 1000  # 10 x 8192 pages without it
    kept, faults = _probe("system")  # the opt-out leaves malloc as it is: the freed blocks go back
    assert not kept and faults > 10 * 8192 // 2
