"""Loading saved models: local directories, weights bundled in the package, and the Hugging Face Hub.

``from_pretrained(name_or_path)`` reads ``config.json``, picks the class from its ``architecture``
entry, builds the model and loads ``model.safetensors`` (strict by default).  ``name_or_path`` is
tried, in order, as: a local directory; a registered pretrained id whose copy is bundled under
``grainseg/weights/``; a Hub repo id (``revision``, ``cache_dir``, ``local_files_only``, ``token``).
Only safetensors are read: no pickle is ever loaded from a directory or the Hub.  ``HF_HUB_OFFLINE``
and ``HF_HUB_CACHE`` are read when called, so they can be set after import.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

__all__ = ["from_pretrained", "load_pretrained", "resolve_pretrained", "PretrainedNotFoundError"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PICKLE_NAMES = ("pytorch_model.bin", "model.pth", "model.pt", "model.ckpt")
_TRUE = ("1", "true", "yes", "on")


class PretrainedNotFoundError(FileNotFoundError):
    """The requested weights are neither local, bundled nor reachable on the Hub."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _default_cache_dir() -> Optional[str]:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
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

    from grainseg.models.registry import pretrained_info
    from grainseg.weights import bundled_dir

    info = pretrained_info(name)
    if info is None and "/" not in name:
        _refuse_architecture_name(name)
    if info and info.get("bundled") and revision is None and not force_download:
        local = bundled_dir(info["bundled"])
        if local is not None:
            return _local_files(local)
    return _hub_files(name, revision, cache_dir, local_files_only, token, force_download)


def _refuse_architecture_name(name: str) -> None:
    """A registered model name is an architecture, not weights: say so at once instead of asking the Hub."""
    from grainseg.models.registry import is_registered_name, list_pretrained

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

    offline = local_files_only or _offline()
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
            how = (
                "You are offline (HF_HUB_OFFLINE=1 or local_files_only=True) and it is not in "
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


def load_pretrained(
    name_or_path: Union[str, Path],
    *,
    cls: Optional[type] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
    token: Optional[Union[str, bool]] = None,
    force_download: bool = False,
    strict: bool = True,
    map_location: Union[str, torch.device] = "cpu",
    **model_kwargs: Any,
):
    """Build and load a saved model; ``cls`` None (or the base class) picks it from config.json."""
    from safetensors.torch import load_file

    from grainseg.models.base import SegmentationModel, check_state_dict, restoring_saved_weights
    from grainseg.models.registry import get_model_class

    config_path, weights_path = resolve_pretrained(
        name_or_path,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        force_download=force_download,
    )
    config = read_config(config_path)
    arch = config.get("architecture")
    if cls is None or cls is SegmentationModel:
        if not arch:
            raise ValueError(f"{config_path} has no 'architecture'; load it with the model class' from_pretrained")
        cls = get_model_class(arch)
    elif arch and arch != cls.__name__:
        raise ValueError(
            f"{name_or_path} holds a {arch}, not a {cls.__name__}; use grainseg.from_pretrained() or {arch}.from_pretrained()"
        )
    # shapes first, from the safetensors header and a model on the meta device: a config that does not fit
    # the weights (say "dims": 1024 next to a small file) is refused before anything is allocated
    header = _header_shapes(weights_path)
    expected = _expected_state(cls, config, model_kwargs)
    missing: list = []
    if expected is not None:
        missing, _ = check_state_dict(expected, header, strict, f"{cls.__name__} built from {config_path}",
                                      source=str(weights_path))
    offline = local_files_only or _offline()
    with restoring_saved_weights(complete=expected is not None and not missing, local_files_only=offline):
        model = cls.from_config(config, **model_kwargs)
    state = load_file(str(weights_path), device="cpu")
    _check_finite(state, weights_path)
    model.load_weights(state, strict=strict)
    return model.to(map_location).eval()


def _header_shapes(weights_path: Path) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file as meta tensors of their shapes (read from the header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except Exception as err:  # not a safetensors file, truncated header
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from None


def _expected_state(cls: type, config: Dict[str, Any], model_kwargs: Dict[str, Any]) -> Optional[Dict[str, torch.Tensor]]:
    """The state dict (meta tensors) that ``config`` builds; None when the class cannot be built on meta."""
    try:
        with torch.device("meta"):
            return dict(cls.from_config(config, **model_kwargs).state_dict())
    except (ValueError, TypeError):
        raise  # a config error: the real build would fail the same way
    except Exception:  # a constructor that needs real tensors: the shapes are checked after building
        return None


def _check_finite(state: Dict[str, torch.Tensor], weights_path: Path) -> None:
    """ValueError naming the file and the first tensor holding NaN or infinity."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        n = int((~torch.isfinite(state[bad[0]])).sum())
        raise ValueError(f"{weights_path}: tensor {bad[0]!r} holds {n} NaN / infinite value(s)"
                         f"{f' (and {len(bad) - 1} more tensor(s))' if len(bad) > 1 else ''}; these weights are "
                         "broken (a diverged training run?) and would give wrong predictions")


def from_pretrained(
    name_or_path: Union[str, Path],
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    local_files_only: bool = False,
    token: Optional[Union[str, bool]] = None,
    force_download: bool = False,
    strict: bool = True,
    map_location: Union[str, torch.device] = "cpu",
    **model_kwargs: Any,
):
    """Load any grainseg model saved with ``save_pretrained``: the class comes from its config.json.

    ``name_or_path``: a local directory, a registered pretrained id (bundled copy first, e.g.
    ``"grainseg/vmunet-aspp-small-exone316l"``) or a Hub repo id.  Returns the model in eval mode.
    """
    return load_pretrained(
        name_or_path,
        cls=None,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        force_download=force_download,
        strict=strict,
        map_location=map_location,
        **model_kwargs,
    )
