"""``SegmentationModel``: the base class of every grainseg network (nn.Module + Hugging Face Hub mixin).

Interface (stable; other modules code against it)::

    class MyNet(SegmentationModel):
        size_divisor = 16                      # forward pads H, W up to a multiple of this, crops back
        def __init__(self, in_chans: int = 3, num_classes: int = 1, width: int = 64,
                     preprocessing: Optional[dict] = None):
            super().__init__(in_chans=in_chans, num_classes=num_classes, preprocessing=preprocessing)
            ...
        def forward_features(self, x: Tensor) -> Tensor:   # padded (b, in_chans, H', W') -> logits
            ...

    model(x)                      # logits (b, num_classes, h, w) for any h, w; 1-channel input is
                                  # repeated to in_chans (3-channel input averaged for in_chans == 1)
    model.predict(x)              # probabilities in eval / inference mode: sigmoid (1 class) or softmax
    model.config                  # every __init__ argument (JSON-able), preprocessing included
    model.preprocessing           # {"normalize": "minmax", "input_size": [256, 256], "train_image_size": None}
    model.save_pretrained(dir, metrics={"dice": 0.91}, dataset="exone316l", overwrite=False)
                                  # config.json + model.safetensors + README.md (model card)
    Cls.from_pretrained(dir_or_repo_id, revision=None, cache_dir=None, local_files_only=False,
                        token=None, strict=True)     # safetensors only, never pickle
    model.load_reference_state_dict(sd)              # weights under the paper authors' names, strict
    model.load_weights(sd, strict=True)              # our names; error lists missing / unexpected keys
    Cls.no_grad_params = ("heads.1.*",)              # params the logits don't use (aux heads): the
                                                     # shared tester then expects no gradient there

Rules for subclasses: ``__init__`` takes explicit keyword arguments only (no ``*args`` / ``**kwargs``),
all JSON-able, and passes ``in_chans``, ``num_classes`` and ``preprocessing`` to this base, so the
Hub config records every argument and round-trips.  ``config.json`` also carries ``architecture``
(the class name), which :func:`grainseg.from_pretrained` uses to pick the class.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from torch import Tensor, nn

from grainseg.data.preprocessing import DEFAULT_PREPROCESSING, normalize_preprocessing
from grainseg.grains.astm import model_error_rms

from .loading import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, header_shapes, hub_offline, read_config, read_weights
from .loading import resolve_pretrained
from .registry import get_model_class

__all__ = [
    "SegmentationModel",
    "StateDictMismatchError",
    "DEFAULT_PREPROCESSING",
    "normalize_preprocessing",
    "pad_to_multiple",
    "state_dict_mismatch",
    "check_state_dict",
    "restoring_saved_weights",
    "saved_weights_policy",
]

#: Keys of config.json that are metadata, not __init__ arguments: they describe the weights rather than build the
#: model.  ``grain_size_validation`` is the
#: model's measured grain-size error (see grainseg.grains.astm.combined_interval); it belongs to these exact
#: weights, so save_pretrained does not carry it over to a fine-tuned copy.
CONFIG_METADATA_KEYS = ("architecture", "grainseg_version", "grain_size_validation")
_RESTORING: "contextvars.ContextVar[Optional[Dict[str, bool]]]" = contextvars.ContextVar("grainseg_restoring",
                                                                                        default=None)

_MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A grain-segmentation model from the `grainseg` library:
architecture `{{ architecture }}` ({{ num_params }} parameters), {{ num_classes }} output class(es),
{{ in_chans }} input channel(s).

Load it with:

```python
import grainseg
model = grainseg.from_pretrained("<this repository or directory>")
probabilities = model.predict(images)  # (b, {{ in_chans }}, h, w) float tensor, min-max normalised
```

## Training data

{{ dataset | default("Not recorded.", true) }}
{% if init_model %}
## Starting point

Fine-tuned from `{{ init_model }}` (weights sha256 `{{ init_sha256 }}`).
{% endif %}
## Metrics

{{ metrics_table }}

## Preprocessing

`{{ preprocessing }}`

## Configuration

```json
{{ config_json }}
```
"""


class StateDictMismatchError(RuntimeError):
    """A state dict does not match the model: lists missing, unexpected and wrongly-shaped keys."""


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the last two dims of ``x`` (bottom / right, edge-replicate) up to a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def state_dict_mismatch(
    model_state: Mapping[str, Tensor], state_dict: Mapping[str, Tensor]
) -> Tuple[list, list, list]:
    """(missing, unexpected, wrong-shape) key lists of ``state_dict`` against ``model_state``."""
    missing = [k for k in model_state if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_state]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in model_state.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    return missing, unexpected, shapes


def check_can_save(save_directory: Path, overwrite: bool) -> None:
    """FileExistsError when ``save_directory`` already holds a saved model and ``overwrite`` is False."""
    if save_directory.exists() and not save_directory.is_dir():
        raise NotADirectoryError(f"{save_directory} exists and is not a directory; choose another folder")
    existing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME) if (save_directory / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{save_directory} already holds {', '.join(existing)}; pass overwrite=True to replace them"
        )


def check_state_dict(model_state: Mapping[str, Tensor], state_dict: Mapping[str, Tensor], strict: bool,
                     model: str, source: str = "state dict") -> Tuple[list, list]:
    """(missing, unexpected) keys; :class:`StateDictMismatchError` on wrong shapes (or, when strict, any
    missing / unexpected key), listing them.  Only ``.shape`` is read: meta tensors work."""
    missing, unexpected, shapes = state_dict_mismatch(model_state, state_dict)
    if shapes or (strict and (missing or unexpected)):
        parts = [f"{source} does not match {model} (strict={strict}):"]
        if missing:
            parts.append(_format_keys("missing keys", missing))
        if unexpected:
            parts.append(_format_keys("unexpected keys", unexpected))
        if shapes:
            parts.append(_format_keys("shape mismatches", shapes))
        raise StateDictMismatchError("\n".join(parts))
    return missing, unexpected


@contextlib.contextmanager
def restoring_saved_weights(complete: bool, local_files_only: bool = False) -> Iterator[None]:
    """Within the block, models are being built to receive saved weights (``from_pretrained``).

    ``complete``: the saved file holds every weight, so constructors need not fetch base weights (SAM's
    ``base_weights``); otherwise they may, from the local cache only when ``local_files_only``.
    """
    token = _RESTORING.set({"complete": bool(complete), "local_files_only": bool(local_files_only)})
    try:
        yield
    finally:
        _RESTORING.reset(token)


def saved_weights_policy() -> Optional[Dict[str, bool]]:
    """None, or {"complete", "local_files_only"} while :func:`restoring_saved_weights` is active."""
    return _RESTORING.get()


def _format_keys(title: str, keys: Sequence[str], limit: int = 25) -> str:
    shown = "\n    ".join(keys[:limit])
    more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"  {title} ({len(keys)}):\n    {shown}{more}"


class SegmentationModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="grainseg",
    pipeline_tag="image-segmentation",
    tags=["grainseg", "grain-segmentation", "microscopy"],
    model_card_template=_MODEL_CARD_TEMPLATE,
):
    """Base of all grainseg models: input checks, padding to ``size_divisor``, predict, Hub I/O."""

    #: forward pads H and W up to a multiple of this before :meth:`forward_features`, then crops back.
    size_divisor: int = 1
    #: registry name of the default preset of this class (set by ``register_model``).
    model_name: Optional[str] = None
    #: fnmatch patterns of parameters the logits do not depend on (e.g. deep-supervision heads that only
    #: a training loss reads); the shared tester does not require gradients for them.
    no_grad_params: Tuple[str, ...] = ()
    #: names of the submodules that form the encoder (what ``--freeze-encoder-epochs`` freezes while
    #: fine-tuning); empty: the class does not say, and :meth:`encoder_parameters` refuses.
    encoder_modules: Tuple[str, ...] = ()
    #: the card's measured grain-size error (config.json ``grain_size_validation``, read by ``from_files``):
    #: ``{"rms_dG": {"planimetric": .., "intercept": ..}, "data": .., "material": ..}``; None for weights that
    #: record none, a new model, or one built with ``from_config``.  The report widens G intervals by it.
    grain_size_validation: Optional[Dict[str, Any]] = None

    def __init__(self, in_chans: int = 3, num_classes: int = 1, preprocessing: Optional[dict] = None) -> None:
        super().__init__()
        if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.preprocessing: Dict[str, Any] = normalize_preprocessing(preprocessing)

    # ------------------------------------------------------------------ forward / predict
    def forward_features(self, x: Tensor) -> Tensor:
        """Logits for an input whose H and W are multiples of ``size_divisor`` (subclasses implement)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features")

    def check_input(self, x: Any) -> None:
        """TypeError / ValueError saying what ``model(x)`` expects: a floating-point torch tensor with the
        weights' dtype (unless autocast is on) on the weights' device."""
        expected = "a float32 torch.Tensor of shape (batch, channels, height, width)"
        if not isinstance(x, Tensor):
            hint = " (convert it with torch.from_numpy(array).float(), or use grainseg.predict_proba for images)" \
                if type(x).__module__.startswith("numpy") else ""
            raise TypeError(f"model input must be {expected}, got {type(x).__module__}.{type(x).__name__}{hint}")
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        param = next(self.parameters(), None)
        if param is None:
            return
        if x.device != param.device:
            raise ValueError(f"input is on {x.device} but the model's weights are on {param.device}; "
                             f"move one of them (x.to({str(param.device)!r}) or model.to({str(x.device)!r}))")
        if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"input has dtype {x.dtype} but the model's weights are {param.dtype}; pass "
                             f"x.to({param.dtype}) (or convert the model with model.to({x.dtype}))")

    def adapt_channels(self, x: Tensor) -> Tensor:
        """Check ``x`` is (b, c, h, w) and match c to ``in_chans`` (1 -> repeat; 3 -> mean if in_chans is 1)."""
        if x.dim() != 4:
            raise ValueError(f"input must be a (batch, channels, height, width) tensor, got shape {tuple(x.shape)}")
        c = x.shape[1]
        if c == self.in_chans:
            return x
        if c == 1:
            return x.expand(-1, self.in_chans, -1, -1)
        if self.in_chans == 1 and c == 3:
            return x.mean(dim=1, keepdim=True)
        raise ValueError(f"input has {c} channels; this model takes {self.in_chans} (or 1, repeated)")

    def forward(self, x: Tensor) -> Tensor:
        """Logits (b, num_classes, h, w) for any h, w: pad to ``size_divisor``, run, crop back."""
        self.check_input(x)
        return self.pad_run_crop(self.adapt_channels(x), self.forward_features)

    def pad_run_crop(self, x: Tensor, run: Callable[[Tensor], Any]) -> Any:
        """``run`` on ``x`` padded to a multiple of ``size_divisor``, its output (a tensor or a list of
        them) cropped back to ``x``'s height and width."""
        h, w = x.shape[-2:]
        out = run(pad_to_multiple(x, self.size_divisor))
        if isinstance(out, Tensor):
            return out[..., :h, :w]
        return [o[..., :h, :w] for o in out]

    def probabilities(self, logits: Tensor) -> Tensor:
        """Logits -> probabilities: sigmoid for one class, softmax over classes otherwise."""
        return torch.sigmoid(logits) if self.num_classes == 1 else torch.softmax(logits, dim=1)

    def predict(self, x: Tensor) -> Tensor:
        """Probabilities for ``x`` in eval and inference mode (the training mode is restored after)."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self.probabilities(self(x))
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> Dict[str, Any]:
        """Every __init__ argument (as passed, JSON-able), with the current ``preprocessing``."""
        cfg = dict(self._hub_mixin_config or {})
        cfg["preprocessing"] = self.preprocessing
        return json.loads(json.dumps(cfg))  # a deep copy in JSON form (tuples become lists)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def encoder_parameters(self) -> Dict[str, nn.Parameter]:
        """{name: parameter} of the encoder (the submodules named by ``encoder_modules``).

        ValueError when the class names no encoder or a named submodule does not exist.
        """
        if not self.encoder_modules:
            raise ValueError(f"{type(self).__name__} does not define its encoder (encoder_modules is empty), "
                             "so it cannot be frozen; train without --freeze-encoder-epochs")
        out: Dict[str, nn.Parameter] = {}
        for prefix in self.encoder_modules:
            try:
                module = self.get_submodule(prefix)
            except AttributeError:
                raise ValueError(f"{type(self).__name__}.encoder_modules names {prefix!r}, which is not a "
                                 "submodule of the model") from None
            out.update({f"{prefix}.{n}": p for n, p in module.named_parameters()})
        return out

    # ------------------------------------------------------------------ weights
    def load_weights(self, state_dict: Mapping[str, Tensor], strict: bool = True) -> Tuple[list, list]:
        """Load a state dict under our names; strict raises :class:`StateDictMismatchError` listing keys.

        Non-strict loading still refuses wrongly-shaped tensors.  Returns (missing, unexpected).
        """
        missing, unexpected = check_state_dict(self.state_dict(), state_dict, strict, type(self).__name__)
        self.load_state_dict(dict(state_dict), strict=False)
        return missing, unexpected

    def reference_to_native(self, state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        """Map a state dict in the paper authors' names to ours (identity here; subclasses override)."""
        return dict(state_dict)

    def load_reference_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True) -> Tuple[list, list]:
        """Load weights saved by the reference (authors') code, strictly by default."""
        return self.load_weights(self.reference_to_native(state_dict), strict=strict)

    # ------------------------------------------------------------------ Hub
    def save_pretrained(
        self,
        save_directory: Union[str, Path],
        *,
        metrics: Optional[Mapping[str, float]] = None,
        dataset: Optional[str] = None,
        overwrite: bool = False,
        config: Optional[dict] = None,
        repo_id: Optional[str] = None,
        push_to_hub: bool = False,
        model_card_kwargs: Optional[Dict[str, Any]] = None,
        **push_to_hub_kwargs: Any,
    ) -> Optional[str]:
        """Write config.json, model.safetensors and a model card (README.md with ``metrics`` and ``dataset``).

        Refuses to replace existing files unless ``overwrite=True``.  The folder is replaced as a whole
        (written as a sibling, then renamed), so an interrupt never leaves a partial model; other files
        in it are kept.
        """
        from grainseg._atomic import atomic_directory

        if not isinstance(save_directory, (str, Path)) or not str(save_directory):
            raise ValueError(f"save_directory must be a folder path, got {save_directory!r}")
        save_directory = Path(save_directory)
        check_can_save(save_directory, overwrite)
        if metrics is not None and not isinstance(metrics, Mapping):
            raise ValueError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
        cfg = dict(config) if config is not None else self.config
        from grainseg._version import __version__

        cfg = {**cfg, "architecture": type(self).__name__, "grainseg_version": __version__}
        card_kwargs = {**self._card_fields(cfg, metrics, dataset), **(model_card_kwargs or {})}
        # the three files are written into a sibling folder that then replaces save_directory in one
        # rename: an interrupt leaves the old model complete, never a folder with some files missing
        with atomic_directory(save_directory) as tmp:
            super().save_pretrained(tmp, config=cfg, model_card_kwargs=card_kwargs)
        if push_to_hub:
            return self.push_to_hub(repo_id=repo_id or save_directory.name, config=cfg,
                                    model_card_kwargs=card_kwargs, **push_to_hub_kwargs)
        return None

    def _card_fields(self, cfg: dict, metrics: Optional[Mapping[str, float]], dataset: Optional[str]) -> dict:
        if metrics:
            rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
            table = "| metric | value |\n|---|---|\n" + rows
        else:
            table = "Not recorded."
        return {
            "title": f"grainseg {type(self).__name__}",
            "architecture": type(self).__name__,
            "num_params": f"{self.num_parameters():,}",
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "dataset": dataset,
            "metrics_table": table,
            "metrics": dict(metrics or {}),
            "preprocessing": json.dumps(self.preprocessing),
            "config_json": json.dumps(cfg, indent=2, sort_keys=True),
        }

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Model card with grainseg's template; the data set goes into the card's metadata too."""
        data = ModelCardData(**self._hub_mixin_info.model_card_data.to_dict())
        if kwargs.get("dataset"):
            data.datasets = [str(kwargs["dataset"])]
        if kwargs.get("init_base_model"):
            data.base_model = str(kwargs["init_base_model"])  # the Hub / registered id fine-tuned from
        return ModelCard.from_template(
            card_data=data,
            template_str=self._hub_mixin_info.model_card_template,
            **kwargs,
        )

    def _save_pretrained(self, save_directory: Path) -> None:
        """Weights as safetensors (contiguous copies, so views and shared tensors save cleanly)."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, Path],
        *,
        force_download: bool = False,
        token: Optional[Union[str, bool]] = None,
        cache_dir: Optional[Union[str, Path]] = None,
        local_files_only: bool = False,
        revision: Optional[str] = None,
        strict: bool = True,
        map_location: Union[str, torch.device] = "cpu",
        **model_kwargs: Any,
    ) -> "SegmentationModel":
        """Build the model from config.json and load model.safetensors (a local dir, a bundled name or a Hub id).

        ``pretrained_model_name_or_path``: a local directory, a registered pretrained id (bundled copy
        first, e.g. ``"grainseg/vmunet-aspp-small-exone316l"``) or a Hub repo id (see
        :func:`grainseg.models.loading.resolve_pretrained`).  On ``SegmentationModel`` itself (this is
        ``grainseg.from_pretrained``) the class comes from config.json's ``architecture``; on a subclass
        the saved architecture must be that class.  ``model_kwargs`` override config values.  Only
        safetensors are read; loading is strict by default.  ``map_location`` (or ``device``): where the
        weights go, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.  Returns the model in eval mode.
        """
        if "device" in model_kwargs:  # the name users reach for: the same as map_location
            map_location = model_kwargs.pop("device")
        if isinstance(map_location, (str, torch.device)):
            from grainseg.devices import resolve_device

            map_location = resolve_device(map_location, option="map_location")
        config_path, weights_path = resolve_pretrained(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
        )
        return cls.from_files(config_path, weights_path, strict=strict, map_location=map_location,
                              local_files_only=local_files_only, name=str(pretrained_model_name_or_path),
                              **model_kwargs)

    @classmethod
    def from_files(
        cls,
        config_path: Union[str, Path],
        weights_path: Union[str, Path],
        *,
        strict: bool = True,
        map_location: Union[str, torch.device] = "cpu",
        local_files_only: bool = False,
        name: Optional[str] = None,
        **model_kwargs: Any,
    ) -> "SegmentationModel":
        """:meth:`from_pretrained` for files already located (by ``resolve_pretrained``): the class lookup,
        the shape check against the safetensors header before anything is allocated, then the build and
        the strict load.  ``name`` is what error messages call the model (default: the folder)."""
        config = read_config(config_path)
        arch = config.get("architecture")
        if cls is SegmentationModel:
            if not arch:
                raise ValueError(f"{config_path} has no 'architecture'; load it with the model class' from_pretrained")
            cls = get_model_class(arch)
        elif arch and arch != cls.__name__:
            raise ValueError(
                f"{name or Path(config_path).parent} holds a {arch}, not a {cls.__name__}; use "
                f"grainseg.from_pretrained() or {arch}.from_pretrained()"
            )
        # shapes first, from the safetensors header and a model on the meta device: a config that does not fit
        # the weights (say "dims": 1024 next to a small file) is refused before anything is allocated
        header = header_shapes(weights_path)
        expected = _expected_state(cls, config, model_kwargs)
        missing: list = []
        if expected is not None:
            missing, _ = check_state_dict(expected, header, strict, f"{cls.__name__} built from {config_path}",
                                          source=str(weights_path))
        with restoring_saved_weights(complete=expected is not None and not missing,
                                     local_files_only=hub_offline(local_files_only)):
            model = cls.from_config(config, **model_kwargs)
        model.load_weights(read_weights(weights_path), strict=strict)
        validation = config.get("grain_size_validation")
        if validation is not None:  # a malformed card fails here, naming its file
            model_error_rms(validation, where=f"{config_path}: 'grain_size_validation'")
            model.grain_size_validation = validation
        return model.to(map_location).eval()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> "SegmentationModel":
        """Build (random weights) from a config dict; metadata keys are ignored, unknown keys raise."""
        params = [p for p in cls._hub_mixin_init_parameters if p != "self"]
        cfg = {k: v for k, v in dict(config).items() if k not in CONFIG_METADATA_KEYS}
        unknown = sorted(set(cfg) - set(params))
        if unknown:
            raise ValueError(f"config has keys {unknown} that {cls.__name__} does not take (it takes {params})")
        cfg.update(overrides)
        return cls(**cfg)


def _expected_state(cls: type, config: Mapping[str, Any], model_kwargs: Mapping[str, Any]) -> Optional[Dict[str, Tensor]]:
    """The state dict (meta tensors) that ``config`` builds; None when the class cannot be built on meta."""
    try:
        with torch.device("meta"):
            return dict(cls.from_config(config, **model_kwargs).state_dict())
    except (ValueError, TypeError):
        raise  # a config error: the real build would fail the same way
    except Exception:  # a constructor that needs real tensors: the shapes are checked after building
        return None
