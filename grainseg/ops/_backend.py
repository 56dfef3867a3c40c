"""Finds the compiled extension ``grainseg._C`` and decides which backend runs the scan ops.

Backends: ``"cpu"`` (C++/OpenMP kernels), ``"cuda"`` (CUDA kernels) and ``"reference"`` (the pure-PyTorch
code in :mod:`grainseg.ops.reference`).  The choice, first match wins:

1. :func:`use_backend` (a context manager / setter, for benchmarks and tests);
2. the environment variable ``GRAINSEG_BACKEND`` (``auto``, ``reference`` or ``extension``);
3. ``auto``: the extension's kernel for the tensors' device when compiled in, else the reference
   (with a one-time warning when the extension is missing altogether).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from typing import Iterator, Optional, Union

import torch

try:  # the extension is optional: a pure-Python install falls back to the reference
    _C = importlib.import_module("grainseg._C")

    _IMPORT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # pragma: no cover - depends on how the package was built
    _C = None
    _IMPORT_ERROR = exc

# Asked once at import: torch.compile (Dynamo) cannot trace a call into the pybind module.
_HAS_CUDA = _C is not None and bool(_C.has_cuda())

__all__ = ["backend", "use_backend", "extension", "extension_has_cuda", "BACKEND_CHOICES", "cpu_capability",
           "cpu_capabilities", "use_cpu_capability", "kernel_limit"]

#: The kernels' limits (csrc/scan_params.h) for a pure-Python install, which has no grainseg._C to read them
#: from: there only ``max_d_state`` matters (the ops and layers cap d_state as the kernels do, so a model
#: built anywhere runs on them).  tests/ops checks that these equal the extension's.
LIMITS_WITHOUT_EXTENSION = {"max_d_state": 256, "cpu_checkpoint_chunk": 64, "cuda_checkpoint_chunk": 2048}

#: Values accepted by ``GRAINSEG_BACKEND`` and :func:`use_backend`.
BACKEND_CHOICES = ("auto", "reference", "extension")

_override: Optional[str] = None
_warned_missing = False


def extension():
    """The compiled module ``grainseg._C``, or ``None`` for a pure-Python install."""
    return _C


def kernel_limit(name: str) -> int:
    """A limit of the compiled kernels as ``grainseg._C`` exports it: ``max_d_state`` (largest state size n),
    ``cpu_checkpoint_chunk`` (steps per saved state the ops ask of the CPU kernels) or
    ``cuda_checkpoint_chunk`` (the CUDA kernels' tile, their only chunk)."""
    if name not in LIMITS_WITHOUT_EXTENSION:
        raise ValueError(f"kernel_limit: name must be one of {tuple(LIMITS_WITHOUT_EXTENSION)}, got {name!r}")
    return int(getattr(_C, name)) if _C is not None else LIMITS_WITHOUT_EXTENSION[name]


def extension_has_cuda() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return _HAS_CUDA


def _requested() -> str:
    choice = _override if _override is not None else os.environ.get("GRAINSEG_BACKEND", "auto")
    choice = (choice or "auto").strip().lower()
    if choice not in BACKEND_CHOICES:
        raise ValueError(f"GRAINSEG_BACKEND must be one of {BACKEND_CHOICES}, got {choice!r}")
    return choice


def backend(device: Union[str, torch.device, None] = None) -> str:
    """Name of the backend the scan ops use for tensors on ``device`` (default CPU).

    Returns ``"cpu"``, ``"cuda"`` or ``"reference"``.  Raises ``RuntimeError`` when the extension is
    requested (``GRAINSEG_BACKEND=extension``) but has no kernel for that device.
    """
    global _warned_missing
    dev = torch.device(device if device is not None else "cpu")
    choice = _requested()
    if choice == "reference":
        return "reference"
    kernel = {"cpu": _C is not None, "cuda": extension_has_cuda()}.get(dev.type, False)
    if kernel:
        return dev.type
    if choice == "extension":
        why = f"grainseg._C failed to import: {_IMPORT_ERROR}" if _C is None else f"no {dev.type} kernels compiled in"
        raise RuntimeError(f"GRAINSEG_BACKEND=extension but the extension cannot run on {dev}: {why}")
    if _C is None and not _warned_missing:
        _warned_missing = True
        warnings.warn(
            "grainseg._C (the compiled scan kernels) is not available; using the slow pure-PyTorch "
            f"reference ({_IMPORT_ERROR}). Reinstall with `pip install --no-build-isolation .` to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
    return "reference"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily force a backend choice (``auto``, ``reference`` or ``extension``) in this process."""
    global _override
    if name not in BACKEND_CHOICES:
        raise ValueError(f"use_backend: name must be one of {BACKEND_CHOICES}, got {name!r}")
    previous, _override = _override, name
    try:
        yield
    finally:
        _override = previous


def _require_extension(what: str):
    if _C is None:
        raise RuntimeError(f"{what}: grainseg._C failed to import: {_IMPORT_ERROR}")
    return _C


def cpu_capability() -> Optional[str]:
    """The CPU kernel variant in use, or ``None`` for a pure-Python install.

    ``"avx512"``, ``"avx2"`` or ``"baseline"`` in the default (runtime dispatch) build: the best this
    CPU runs, or the one ``GRAINSEG_CPU_CAPABILITY`` names; ``"native"`` in a ``GRAINSEG_MARCH`` build.
    Raises ``ValueError`` for an unknown ``GRAINSEG_CPU_CAPABILITY`` and ``RuntimeError`` when the CPU
    lacks the variant it names.
    """
    return None if _C is None else _C.cpu_capability()


def cpu_capabilities() -> list:
    """The CPU kernel variants this build holds that this CPU runs, best first (empty without ``_C``)."""
    return [] if _C is None else list(_C.supported_cpu_capabilities())


@contextlib.contextmanager
def use_cpu_capability(name: str) -> Iterator[None]:
    """Temporarily run the CPU kernels' variant ``name`` in this process (tests, benchmarks)."""
    C = _require_extension("use_cpu_capability")
    previous = C.cpu_capability()
    C.set_cpu_capability(name)
    try:
        yield
    finally:
        C.set_cpu_capability(previous)
