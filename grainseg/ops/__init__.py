"""Scan ops: compiled kernels (``grainseg._C``) with a pure-PyTorch reference as ground truth.

- :func:`selective_scan`: mamba-ssm's ``selective_scan_fn``, on CPU and GPU.
- :func:`ss2d_scan`: VM-UNet's four-direction SS2D scan, fused, in spatial layout.
- :mod:`grainseg.ops.reference`: the readable references of both.
- :func:`backend`: which implementation runs (``cpu``, ``cuda`` or ``reference``).
- :func:`cpu_capability`: which compiled CPU kernel variant runs (``avx512``, ``avx2``, ``baseline``, ``native``).
"""
from . import reference
from ._backend import (backend, cpu_capabilities, cpu_capability, extension, extension_has_cuda, use_backend,
                       use_cpu_capability)
from .selective_scan import selective_scan
from .ss2d_scan import ss2d_scan

__all__ = ["selective_scan", "ss2d_scan", "reference", "backend", "use_backend", "extension", "extension_has_cuda",
           "cpu_capability", "cpu_capabilities", "use_cpu_capability"]
