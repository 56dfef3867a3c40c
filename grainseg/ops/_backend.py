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

__all__ = ["backend", "use_backend", "extension", "extension_has_cuda", "BACKEND_CHOICES"]

#: Values accepted by ``GRAINSEG_BACKEND`` and :func:`use_backend`.
BACKEND_CHOICES = ("auto", "reference", "extension")

_override: Optional[str] = None
_warned_missing = False


def extension():
    """The compiled module ``grainseg._C``, or ``None`` for a pure-Python install."""
    return _C


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
