"""Keeping freed memory in the process on glibc, so that CPU training does not page-fault every tensor.

torch's CPU allocator is plain ``malloc``.  glibc serves blocks over a dynamic threshold by ``mmap`` and
gives them back by ``munmap`` on ``free``, and trims the top of its heap, so the multi-megabyte
activations and gradients of a training step come back as fresh pages each step: about 40,000 minor
page faults per VM-UNet-ASPP step (batch 1, 256x256), a few microseconds each on a VM.  Raising the mmap
and trim thresholds (``mallopt``) keeps those blocks for reuse: about 2,000 faults per step.  The cost
is that the process keeps its peak heap instead of returning it to the system between steps.

:func:`keep_freed_memory` does this once per process; ``grainseg`` commands and :func:`grainseg.train.train`
call it.  ``GRAINSEG_MALLOC=system`` leaves malloc as it is.  On other C libraries it does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import os

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 1 << 30
_TOP_PAD = 64 << 20


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Set glibc's mmap / trim thresholds so freed tensors are reused; True when they are set.

    Idempotent.  Returns False (and changes nothing) on a non-glibc system, when ``GRAINSEG_MALLOC`` is
    ``system``, or when ``mallopt`` refuses a value.
    """
    if os.environ.get("GRAINSEG_MALLOC", "").strip().lower() == "system":
        return False
    try:  # glibc's own name for itself; no file read, no ldconfig subprocess (ctypes.util.find_library)
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        libc = ctypes.CDLL(None)  # the process's own symbols, glibc's mallopt among them
        return all(libc.mallopt(opt, value) == 1 for opt, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
    except (AttributeError, OSError, ValueError):  # confstr name unknown (not glibc), no mallopt
        return False
