"""Where saved weights come from: the one home of weight loading below the model classes.

- :func:`resolve_pretrained`: ``(config.json, model.safetensors)`` paths for ``name_or_path``, tried in
  order as a local directory; a registered pretrained id whose copy is bundled under
  ``grainseg/weights/`` (:func:`bundled_dir`); a Hub repo id (``revision``, ``cache_dir``,
  ``local_files_only``, ``token``, ``force_download``).  Only safetensors are read: no pickle is ever
  loaded from a directory or the Hub.  ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` are read when called,
  so they can be set after import.
- :func:`read_config`: config.json as a dict; :func:`header_shapes` / :func:`read_weights`: a
  model.safetensors file's shapes (header only) and its tensors (refusing NaN / infinity).
- :func:`read_state_dict` / :func:`unwrap_checkpoint`: state dicts from checkpoint files made by other
  code (safetensors, or weights-only PyTorch checkpoints).

Building the model from these files is :meth:`grainseg.models.SegmentationModel.from_pretrained` (the
class comes from config.json's ``architecture``); ``grainseg.from_pretrained`` is that method.
``grainseg/weights/`` holds only the bundled weight folders.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from .registry import is_registered_name, list_pretrained, pretrained_info

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "WEIGHTS_DIR",
    "REPO_WEIGHTS_DIR",
    "PretrainedNotFoundError",
    "resolve_pretrained",
    "bundled_dir",
    "read_config",
    "header_shapes",
    "read_weights",
    "read_state_dict",
    "unwrap_checkpoint",
    "hub_offline",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: Folder of the bundled weights (inside the installed package): one sub-folder per pretrained model.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Folder of the weights kept in the source repository but too large for the wheel (``weights/`` beside
#: ``grainseg/`` in a checkout, recognised by its setup.py); None in an installed wheel, where such ids
#: come from the Hub.
_CHECKOUT = Path(__file__).resolve().parents[2]
REPO_WEIGHTS_DIR: Optional[Path] = _CHECKOUT / "weights" if (_CHECKOUT / "setup.py").is_file() else None
_PICKLE_NAMES = ("pytorch_model.bin", "model.pth", "model.pt", "model.ckpt")
_TRUE = ("1", "true", "yes", "on")


class PretrainedNotFoundError(FileNotFoundError):
    """The requested weights are neither local, bundled nor reachable on the Hub."""


def hub_offline(local_files_only: bool = False) -> bool:
    """True when the Hub may not be asked: ``local_files_only`` or ``HF_HUB_OFFLINE`` set (read now)."""
    return local_files_only or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_unresolvable(timeout: float = 3.0) -> Optional[str]:
    """The Hub's host name when it does not resolve here (no network: say so at once, use the cache), else None.

    huggingface_hub retries a failed connection for about 20 s before it gives up.  A failed DNS lookup
    says the same in milliseconds.  Behind a proxy (the ``*_PROXY`` variables) the proxy resolves names,
    and a lookup slower than ``timeout`` proves nothing: both count as reachable.
    """
    import socket
    import threading
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    if not host:
        return None
    failed: list = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            failed.append(True)

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    return host if failed else None


def _default_cache_dir() -> Optional[str]:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def bundled_dir(name: str) -> Optional[Path]:
    """The local copy of a registered id: ``grainseg/weights/<name>`` (in the package), else
    ``weights/<name>`` of the source checkout (:data:`REPO_WEIGHTS_DIR`), whichever holds config.json and
    model.safetensors first; None when neither does."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"bundled weights name must be a plain folder name, got {name!r}")
    for root in (WEIGHTS_DIR, REPO_WEIGHTS_DIR):
        if root is None:
            continue
        folder = root / name
        if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
            return folder
    return None


def _local_files(directory: Path) -> Tuple[Path, Path]:
    config, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not weights.is_file():
        pickles = [n for n in _PICKLE_NAMES if (directory / n).exists()]
        hint = (
            f" It holds {pickles}: grainseg does not load pickle files; convert them to safetensors "
            "(safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors'))."
            if pickles
            else ""
        )
        raise PretrainedNotFoundError(f"{directory} has no {WEIGHTS_NAME}.{hint}")
    if not config.is_file():
        raise PretrainedNotFoundError(f"{directory} has no {CONFIG_NAME} (save models with model.save_pretrained)")
    return config, weights


def resolve_pretrained(
    name_or_path: Union[str, Path],
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
    token: Optional[Union[str, bool]] = None,
    force_download: bool = False,
) -> Tuple[Path, Path]:
    """(config.json, model.safetensors) paths for a local dir, a bundled pretrained id or a Hub id."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        raise ValueError(f"name_or_path must be a directory or a Hub repo id, got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _local_files(path)
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise PretrainedNotFoundError(f"{name} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")

    info = pretrained_info(name)
    if info is None and "/" not in name:
        _refuse_architecture_name(name)
        # no folder of that name, no pretrained id, and no "owner/name": a typo, not a Hub repo to ask for
        raise PretrainedNotFoundError(
            f"{name!r} is not a folder, a pretrained id ({', '.join(list_pretrained()) or 'none'}) or a Hub repo "
            "id (owner/name)")
    if info and info.get("bundled") and revision is None and not force_download:
        local = bundled_dir(info["bundled"])
        if local is not None:
            return _local_files(local)
    return _hub_files(name, revision, cache_dir, local_files_only, token, force_download)


def _refuse_architecture_name(name: str) -> None:
    """A registered model name is an architecture, not weights: say so at once instead of asking the Hub."""
    if is_registered_name(name):
        have = ", ".join(list_pretrained()) or "none"
        raise PretrainedNotFoundError(
            f"{name!r} is a model architecture without pretrained weights. Models with weights: {have}; or "
            f"pass a folder saved with save_pretrained(), such as the best/ folder of `grainseg train --model {name}`")


def _hub_files(
    repo_id: str,
    revision: Optional[str],
    cache_dir: Optional[Union[str, Path]],
    local_files_only: bool,
    token: Optional[Union[str, bool]],
    force_download: bool,
) -> Tuple[Path, Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    offline = hub_offline(local_files_only)
    unresolved = None if offline or force_download else hub_unresolvable()
    if unresolved:  # no network: the cache answers (as huggingface_hub would, 20 s later) or the error does
        offline = True
    cache_dir = cache_dir if cache_dir is not None else _default_cache_dir()
    files = []
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            files.append(
                Path(
                    hf_hub_download(
                        repo_id,
                        filename,
                        revision=revision,
                        cache_dir=cache_dir,
                        local_files_only=offline,
                        token=token,
                        force_download=force_download,
                    )
                )
            )
        except HFValidationError as err:
            raise ValueError(f"{repo_id!r} is neither a local directory nor a valid Hub repo id: {err}") from None
        except Exception as err:  # offline miss, unknown repo, network failure: one helpful message
            where = f"the Hugging Face cache ({cache_dir or 'default location'})"
            why = (f"There is no network ({unresolved} does not resolve)" if unresolved else
                   "You are offline (HF_HUB_OFFLINE=1 or local_files_only=True)")
            how = (
                f"{why} and it is not in "
                f"{where}. Get the weights once with network access, e.g. "
                f"`huggingface-cli download {repo_id}` or `grainseg.from_pretrained({repo_id!r})`, "
                "or pass a local directory saved with model.save_pretrained()."
                if offline
                else f"Check the repo id, revision and token, or pass a local directory. ({type(err).__name__}: {err})"
            )
            raise PretrainedNotFoundError(f"could not get {filename} of {repo_id!r}" +
                                          (f" at revision {revision!r}" if revision else "") + f". {how}") from err
    return files[0], files[1]


def read_config(config_path: Union[str, Path]) -> Dict[str, Any]:
    """Parse a config.json into a dict (ValueError naming the file when it is not a JSON object)."""
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} must hold a JSON object, got {type(config).__name__}")
    return config


def header_shapes(weights_path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file as meta tensors of their shapes (read from the header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except Exception as err:  # not a safetensors file, truncated header
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from None


def read_weights(weights_path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensors of a model.safetensors file on CPU; ValueError naming the file and the first tensor
    holding NaN or infinity (broken weights would give wrong predictions)."""
    from safetensors.torch import load_file

    state = load_file(str(weights_path), device="cpu")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        n = int((~torch.isfinite(state[bad[0]])).sum())
        raise ValueError(f"{weights_path}: tensor {bad[0]!r} holds {n} NaN / infinite value(s)"
                         f"{f' (and {len(bad) - 1} more tensor(s))' if len(bad) > 1 else ''}; these weights are "
                         "broken (a diverged training run?) and would give wrong predictions")
    return state


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
    """Read a state dict from ``.safetensors`` or a weights-only PyTorch checkpoint, on CPU.

    PyTorch checkpoints (``.pth``/``.pt``/``.ckpt``/``.bin``) are read with
    ``torch.load(weights_only=True)``, which refuses code in the pickle, and unwrapped from the
    ``"model"`` / ``"state_dict"`` nesting that training scripts add.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        return unwrap_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
    raise ValueError(f"checkpoint {path} must be .safetensors, .pth, .pt, .ckpt or .bin")
