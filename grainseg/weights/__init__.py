"""Weights that ship inside the package, and reading checkpoint files made by other code.

- :func:`bundled_dir`: the folder ``grainseg/weights/<name>/`` when it holds config.json and
  model.safetensors (the embedded default model lives in ``vmunet-aspp-small-exone316l/``).
- :func:`read_state_dict`: a state dict from a safetensors file, or from a PyTorch checkpoint
  (``.pth``/``.pt``/``.ckpt``: read with ``torch.load(weights_only=True)``, which refuses code in the
  pickle), unwrapping the ``"model"`` / ``"state_dict"`` nesting that training scripts add.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import torch

__all__ = ["WEIGHTS_DIR", "bundled_dir", "read_state_dict", "unwrap_checkpoint"]

#: Folder of the bundled weights (inside the installed package).
WEIGHTS_DIR = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Optional[Path]:
    """``grainseg/weights/<name>`` if it holds config.json and model.safetensors, else None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"bundled weights name must be a plain folder name, got {name!r}")
    folder = WEIGHTS_DIR / name
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    return None


def unwrap_checkpoint(obj: object) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: follows ``model`` / ``state_dict`` / ``model_state_dict`` keys."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ("model", "state_dict", "model_state_dict", "net"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError("checkpoint holds no state dict (expected a dict of tensors, maybe under 'model')")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError("checkpoint holds no tensors")
    return tensors


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a weights-only PyTorch checkpoint, on CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        return unwrap_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
    raise ValueError(f"checkpoint {path} must be .safetensors, .pth, .pt, .ckpt or .bin")
