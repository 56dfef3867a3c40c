"""Fine-tuning support for ``grainseg train --init`` / ``grainseg finetune``.

- :func:`load_init_model`: the starting model from a registered pretrained id, a Hub id or a folder saved
  with ``save_pretrained`` (strict loading; a head for another class count is re-initialised and named);
- :func:`holdout_split`: a seeded hold-out of whole images for validation when the data has no splits;
- :class:`EncoderFreeze`: freezes a model's encoder (``encoder_modules``) for the first epochs.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["load_init_model", "holdout_split", "EncoderFreeze", "resolve_init_id"]


def resolve_init_id(init: str) -> str:
    """The init spec as recorded: a local folder as its absolute path, an id unchanged."""
    path = Path(init).expanduser()
    return str(path.resolve()) if path.is_dir() else str(init)


def load_init_model(init: str, model_kwargs: Optional[Mapping[str, Any]] = None,
                    model: Optional[str] = None) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model, info) for ``--init``: a registered pretrained id, a Hub id or a saved folder.

    ``model_kwargs`` override the saved config (weights must still fit: strict loading);
    ``in_chans`` may not change (ValueError: the first layer's weights are for the saved channel
    count).  A saved model with ``num_classes`` other than 1 gets a fresh one-class head (the trainer
    trains grain interior): the re-initialised tensors are listed in ``info["head_reinitialised"]``.
    ``model``: a registered name the caller asked for; ValueError when its class is not the saved one.
    ``info``: ``id``, ``sha256`` (of model.safetensors), ``architecture``, ``model_name``, ``in_chans``,
    ``head_reinitialised``.
    """
    from grainseg.inference.predict import _sha256
    from grainseg.models.base import check_state_dict
    from grainseg.models.loading import read_config, read_weights, resolve_pretrained
    from grainseg.models.registry import _entry, get_model_class, preset_of, pretrained_info

    kwargs = dict(model_kwargs or {})
    config_path, weights = resolve_pretrained(init)
    config = read_config(config_path)
    arch = config.get("architecture")
    if not arch:
        raise ValueError(f"--init {init}: {config_path} has no 'architecture' entry (not saved by grainseg?)")
    cls = get_model_class(arch)
    if model is not None and _entry(model).cls is not cls:
        raise ValueError(f"--model {model} is a {_entry(model).cls.__name__}, but --init {init} holds a {arch}; "
                         "drop --model (the architecture comes from the --init model)")
    saved_chans = int(config.get("in_chans", 3))
    if "in_chans" in kwargs and int(kwargs["in_chans"]) != saved_chans:
        raise ValueError(f"--init {init} takes {saved_chans} input channel(s); in_chans={kwargs['in_chans']} "
                         "would need a new first layer. Keep in_chans (grey images are repeated to 3 channels, RGB "
                         "averaged for a 1-channel model) or train that model from scratch without --init")
    if "num_classes" in kwargs and int(kwargs["num_classes"]) != 1:
        raise ValueError("the trainer trains one class (grain interior): num_classes must be 1")
    saved_classes = int(config.get("num_classes", 1))
    reinit: List[str] = []
    if saved_classes == 1:
        net = cls.from_files(config_path, weights, name=str(init), **kwargs)  # the files found above
    else:
        net = cls.from_config(config, **{**kwargs, "num_classes": 1})
        state = read_weights(weights)
        own = net.state_dict()
        reinit = [k for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
        keep = {k: v for k, v in state.items() if k not in reinit}
        kept_own = {k: v for k, v in own.items() if k not in reinit}
        check_state_dict(kept_own, keep, True, f"{arch} from {config_path}", source=str(weights))
        net.load_state_dict(keep, strict=False)
    registered = pretrained_info(str(init))
    info = {"id": resolve_init_id(init), "sha256": _sha256(weights), "architecture": arch,
            "model_name": ((registered or {}).get("model") or preset_of(cls, config)
                           or getattr(cls, "model_name", None) or arch),
            "in_chans": int(getattr(net, "in_chans", saved_chans)), "saved_num_classes": saved_classes,
            "head_reinitialised": reinit}
    return net.train(), info


def holdout_split(names: Sequence[str], fraction: float, seed: int) -> Tuple[List[str], List[str]]:
    """(train, val) image names: ``round(fraction * n)`` images (at least 1, at most n - 1) held out for
    validation, drawn with a generator seeded by ``seed``.  One image: ([it], [it]) with a warning (no
    hold-out is possible; validation then measures the fit to the training image)."""
    names = sorted(names)
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction!r}")
    if len(names) == 0:
        raise ValueError("no images to split")
    if len(names) == 1:
        warnings.warn(f"only one image ({names[0]}): no validation image can be held out, so it is used for "
                      "both training and validation; the best checkpoint and early stopping then follow the fit "
                      "to the training image. Label a second image for a real validation", UserWarning,
                      stacklevel=3)
        return list(names), list(names)
    n_val = min(max(1, int(round(fraction * len(names)))), len(names) - 1)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(int(seed))).tolist()
    val = sorted(names[i] for i in order[:n_val])
    return [n for n in names if n not in set(val)], val


class EncoderFreeze:
    """Freeze ``model.encoder_parameters()`` while ``epoch < epochs``: no gradient, and the encoder's
    modules in eval mode (BatchNorm statistics and dropout fixed).  Parameters that were already frozen
    (SAM's) stay frozen after."""

    def __init__(self, model: nn.Module, epochs: int) -> None:
        self.model, self.epochs = model, int(epochs)
        self.params = model.encoder_parameters() if self.epochs > 0 else {}
        self.trainable = {n: p.requires_grad for n, p in self.params.items()}

    def apply(self, epoch: int) -> bool:
        """Set the encoder for ``epoch`` (call after ``model.train()``); True when it is frozen."""
        if not self.params:
            return False
        frozen = epoch < self.epochs
        for n, p in self.params.items():
            p.requires_grad_(self.trainable[n] and not frozen)
        if frozen:
            for prefix in self.model.encoder_modules:
                self.model.get_submodule(prefix).eval()
        return frozen
