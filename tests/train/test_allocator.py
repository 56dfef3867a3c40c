"""keep_freed_memory: glibc keeps freed blocks in the heap for reuse instead of returning them, opt-out by env."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# In a child process (malloc settings are per process): a 20 MB block, freed, must stay in the heap as
# its releasable top (mallinfo2's keepcost) instead of going back to the system.
_PROBE = """
import ctypes
from grainseg._allocator import keep_freed_memory
kept = keep_freed_memory()
assert keep_freed_memory() == kept  # idempotent
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
size = 20 << 20
p = libc.malloc(size)
ctypes.memset(p, 1, size)
libc.free(p)
print(int(kept), libc.mallinfo2().keepcost >= size)
"""


def _probe(env_value):
    env = dict(os.environ)
    env.pop("GRAINSEG_MALLOC", None)
    if env_value is not None:
        env["GRAINSEG_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    kept, retained = out.stdout.split()
    return bool(int(kept)), retained == "True"


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_blocks_stay_in_the_heap_for_reuse():
    assert _probe(None) == (True, True)
    kept, _ = _probe("system")  # the opt-out leaves malloc as it is (what glibc then does depends on history)
    assert not kept
