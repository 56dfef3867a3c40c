"""Model registry: names -> (class, default arguments, paper facts, tiny test config), plus pretrained ids.

Interface (stable; other modules code against it)::

    @register_model("unet", paper_name="U-Net", paper_dice=90.9, tiny=dict(base_channels=8))
    class UNet(SegmentationModel): ...

    # more presets of one class, either in the decorator ...
    @register_model("vmunet_aspp", paper_name="VM-UNet-ASPP", paper_dice=91.95, tiny=dict(dims=8),
                    presets={"vmunet_aspp_small": dict(dims=32, depths=[1, 1, 2, 1], description="...")})
    # ... or afterwards
    register_preset("vmunet_aspp_small", VMUNetASPP, dims=32, depths=[1, 1, 2, 1], tiny=dict(dims=8))

    create_model("vmunet_aspp", **overrides) -> SegmentationModel    # preset defaults + overrides
    list_models(pattern=None) -> list[str]                          # sorted names; fnmatch pattern
    model_info(name) -> dict   # name, cls, class_name, defaults, paper_name, paper_dice, tiny,
                               # description, num_params (counted lazily on the meta device, cached)
    tiny_config(name) -> dict  # preset defaults + its tiny overrides (what the shared tester builds)
    get_model_class(class_name) -> type                             # for config.json "architecture"
    register_pretrained(repo_id, model=..., bundled=...)            # Hub id with an optional bundled copy
    pretrained_info(repo_id) -> dict | None

``presets`` entries may carry ``paper_name``, ``paper_dice``, ``tiny`` and ``description`` besides the
constructor arguments.  Registering checks that the class is a SegmentationModel (an nn.Module with
``forward_features`` and ``from_config``), that its ``__init__`` has explicit keyword arguments only (so
the Hub config round-trips) and that the preset's arguments exist.

Every architecture module is imported by ``grainseg/models/__init__.py`` (the one place that lists
them), so the tables are complete once ``grainseg.models`` is imported.  This module imports nothing
else of ``grainseg.models``: the base class and the weight loading look names up here.
"""
from __future__ import annotations

import copy
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

__all__ = [
    "register_model",
    "register_preset",
    "register_pretrained",
    "create_model",
    "list_models",
    "model_info",
    "tiny_config",
    "get_model_class",
    "pretrained_info",
    "list_pretrained",
    "register_unavailable",
    "is_registered_name",
]

_META_KEYS = ("paper_name", "paper_dice", "tiny", "description")


@dataclass
class _Entry:
    name: str
    cls: type
    defaults: Dict[str, Any]
    paper_name: Optional[str] = None
    paper_dice: Optional[float] = None
    tiny: Dict[str, Any] = field(default_factory=dict)
    description: str = ""
    num_params: Optional[int] = None


_MODELS: Dict[str, _Entry] = {}
_PRETRAINED: Dict[str, Dict[str, Any]] = {}
#: Models whose optional dependencies are missing: name -> how to install them.
_UNAVAILABLE: Dict[str, str] = {}


def _init_params(cls: type) -> Dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return params


def _check_class(cls: type) -> None:
    # the interface of SegmentationModel, checked without importing base.py (which sits above this module)
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)
            and all(callable(getattr(cls, a, None)) for a in ("forward_features", "from_config", "from_pretrained"))):
        raise TypeError(f"registered models must subclass SegmentationModel, got {cls!r}")
    params = _init_params(cls)
    var = [p.name for p in params.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if var:
        raise TypeError(f"{cls.__name__}.__init__ must take explicit arguments only (found *{var}) so its config round-trips")
    missing = [n for n in ("in_chans", "num_classes", "preprocessing") if n not in params]
    if missing:
        raise TypeError(f"{cls.__name__}.__init__ must accept {missing}")


def _check_args(cls: type, kwargs: Dict[str, Any], what: str) -> None:
    params = _init_params(cls)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"{what}: {cls.__name__} has no argument(s) {unknown}; it takes {sorted(params)}")


def register_preset(
    name: str,
    cls: type,
    *,
    paper_name: Optional[str] = None,
    paper_dice: Optional[float] = None,
    tiny: Optional[Dict[str, Any]] = None,
    description: str = "",
    **defaults: Any,
) -> None:
    """Register ``name`` as ``cls`` built with ``defaults``; ``tiny`` overrides them for fast tests."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    _check_class(cls)
    _check_args(cls, defaults, f"preset {name!r}")
    _check_args(cls, tiny or {}, f"tiny config of {name!r}")
    old = _MODELS.get(name)
    if old is not None and (old.cls.__module__, old.cls.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model name {name!r} is already registered to {old.cls.__name__}")
    _MODELS[name] = _Entry(name, cls, dict(defaults), paper_name, paper_dice, dict(tiny or {}), description)


def register_model(
    name: str,
    *,
    paper_name: Optional[str] = None,
    paper_dice: Optional[float] = None,
    tiny: Optional[Dict[str, Any]] = None,
    description: str = "",
    presets: Optional[Dict[str, Dict[str, Any]]] = None,
    **defaults: Any,
) -> Callable[[type], type]:
    """Class decorator: register the class as ``name`` (with ``defaults``) and any extra ``presets``."""

    def decorator(cls: type) -> type:
        register_preset(name, cls, paper_name=paper_name, paper_dice=paper_dice, tiny=tiny,
                        description=description or (cls.__doc__ or "").strip().split("\n")[0], **defaults)
        if cls.__dict__.get("model_name") is None:
            cls.model_name = name
        for preset, spec in (presets or {}).items():
            spec = dict(spec)
            meta = {k: spec.pop(k) for k in _META_KEYS if k in spec}
            register_preset(preset, cls, **meta, **spec)
        return cls

    return decorator


def register_unavailable(name: str, install: str) -> None:
    """Record a model that exists but whose optional dependencies are missing (``install`` says how)."""
    _UNAVAILABLE[name] = install


def is_registered_name(name: str) -> bool:
    """True for a registered model name, including models whose optional dependencies are missing."""
    return name in _MODELS or name in _UNAVAILABLE


def _entry(name: str) -> _Entry:
    if name not in _MODELS and name in _UNAVAILABLE:
        raise ImportError(f"model {name!r} needs optional dependencies that are not installed: {_UNAVAILABLE[name]}")
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Registered model names (sorted), optionally filtered by an fnmatch ``pattern`` like ``"vmunet*"``."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(name: str, **overrides: Any):
    """Build registered model ``name`` with its preset arguments updated by ``overrides``."""
    entry = _entry(name)
    _check_args(entry.cls, overrides, f"create_model({name!r})")
    return entry.cls(**{**copy.deepcopy(entry.defaults), **overrides})


def tiny_config(name: str) -> Dict[str, Any]:
    """Arguments of the small test configuration of ``name`` (preset defaults + tiny overrides)."""
    entry = _entry(name)
    return {**copy.deepcopy(entry.defaults), **copy.deepcopy(entry.tiny)}


def _count_params(entry: _Entry) -> int:
    try:
        with torch.device("meta"):
            model = entry.cls(**copy.deepcopy(entry.defaults))
    except Exception:  # a constructor that needs real tensors (e.g. .item()): build it for real
        model = entry.cls(**copy.deepcopy(entry.defaults))
    return sum(p.numel() for p in model.parameters())


def model_info(name: str) -> Dict[str, Any]:
    """Class, defaults, paper name, paper Dice, tiny config and parameter count (counted once, lazily)."""
    entry = _entry(name)
    if entry.num_params is None:
        entry.num_params = _count_params(entry)
    return {
        "name": entry.name,
        "cls": entry.cls,
        "class_name": entry.cls.__name__,
        "defaults": copy.deepcopy(entry.defaults),
        "paper_name": entry.paper_name,
        "paper_dice": entry.paper_dice,
        "tiny": copy.deepcopy(entry.tiny),
        "description": entry.description,
        "num_params": entry.num_params,
    }


def get_model_class(class_name: str) -> type:
    """The registered class called ``class_name`` (config.json's ``architecture``)."""
    for entry in _MODELS.values():
        if entry.cls.__name__ == class_name:
            return entry.cls
    known = sorted({e.cls.__name__ for e in _MODELS.values()})
    raise ValueError(f"unknown architecture {class_name!r}; registered classes: {', '.join(known)}")


def _json_form(value: Any) -> Any:
    # tuples as lists, as a saved config.json holds them
    if isinstance(value, (list, tuple)):
        return [_json_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_form(v) for k, v in value.items()}
    return value


def preset_of(cls: type, config: Dict[str, Any]) -> Optional[str]:
    """The registered preset of ``cls`` whose architecture arguments equal those in ``config``, or None.

    A folder saved with ``save_pretrained`` records every ``__init__`` argument but not the preset it was
    built from; this names it (e.g. ``vmunet_aspp_small``) for logs and run records.  ``in_chans``,
    ``num_classes`` and ``preprocessing`` are not compared (a preset keeps its name when they change).
    """
    params = {n: p for n, p in _init_params(cls).items() if n not in ("in_chans", "num_classes", "preprocessing")}
    for entry in _MODELS.values():
        if entry.cls is not cls:
            continue
        full = {n: entry.defaults.get(n, p.default) for n, p in params.items()}
        if all(n in config and _json_form(config[n]) == _json_form(v) for n, v in full.items()
               if v is not inspect.Parameter.empty):
            return entry.name
    return None


def register_pretrained(repo_id: str, *, model: str, bundled: Optional[str] = None, description: str = "") -> None:
    """Register a Hub id; ``bundled`` names a folder under grainseg/weights/ tried before the Hub."""
    if "/" not in repo_id:
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    _PRETRAINED[repo_id] = {"repo_id": repo_id, "model": model, "bundled": bundled, "description": description}


def pretrained_info(repo_id: str) -> Optional[Dict[str, Any]]:
    """The registered pretrained entry of ``repo_id`` (None when it is not registered)."""
    info = _PRETRAINED.get(str(repo_id))
    return dict(info) if info else None


def list_pretrained() -> List[str]:
    """Registered pretrained ids."""
    return sorted(_PRETRAINED)
