"""Checking a device name from the user (``--device`` / ``device=``) before anything is loaded onto it."""
from __future__ import annotations

import re

import torch

__all__ = ["resolve_device"]

_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: object, option: str = "--device") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; ``cpu``, ``cuda`` and ``cuda:N`` are checked.

    Raises ValueError naming ``option`` for anything else, for CUDA on a machine without it and for a
    CUDA index the machine does not have.
    """
    text = str(name).strip().lower() if isinstance(name, (str, torch.device)) else None
    if text is None or not _PATTERN.match(text):
        raise ValueError(f"{option} must be auto, cpu, cuda or cuda:N, got {name!r}")
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {text}: CUDA is not available on this machine (use {option} cpu)")
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{option} {text}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return text
