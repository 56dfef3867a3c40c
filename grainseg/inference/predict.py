"""Grain-interior probability maps for micrographs of any size, and the full grain analysis.

:func:`predict_proba` feeds a model exactly what the evaluation measured: the image goes through
:func:`grainseg.data.transforms.preprocess_image` (channels, min-max normalisation, resize) with the
model's ``preprocessing`` record.  A micrograph larger than the training images is first scaled by
``input_size / train_image_size`` (so grains have the size the model learned), then processed by
Gaussian-blended sliding windows of ``input_size`` tiles, and the probability map is resized back to the
image's own resolution.  An image of the training size therefore takes the same single-tile path as the
evaluation.  ``rescale="auto"`` (the default of :func:`analyze`, off in :func:`predict_proba`) feeds a
micrograph of another magnification with its grains at the training size (:mod:`.rescale`).

:func:`analyze` adds thresholding, grain labelling, regionprops and ASTM E112 (a
:class:`grainseg.grains.GrainReport`).  :func:`load_model` resolves ``--model`` values and records the
model id and revision; without a model, the embedded default is loaded from the package (never the
network).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from grainseg.data.preprocessing import normalize_preprocessing, scaled_size
from grainseg.devices import resolve_device
from grainseg.grains.intercepts import DEFAULT_DIRECT_LINK
from grainseg.grains.report import GrainReport

from .rescale import DEFAULT_RESCALE, RESCALE_RANGE
from .tiling import sliding_window
from .tta import TTA, record_tta, resolve_tta

__all__ = ["DEFAULT_MODEL", "predict_proba", "predict_proba_rescaled", "analyze", "load_model", "scaled_size"]

#: The embedded default model (bundled in grainseg/weights/, loaded without network).
DEFAULT_MODEL = "grainseg/vmunet-aspp-small-exone316l"

ImageLike = Union[str, Path, np.ndarray]

#: ``rescale="auto"`` enlarges an image at most to this many pixels at the network's input.
MAX_RESCALED_PIXELS = 64_000_000


def _load_image(image: ImageLike) -> Tuple[np.ndarray, Optional[str]]:
    if isinstance(image, (str, Path)):
        from grainseg.data.io import read_image

        return read_image(image), str(image)
    if isinstance(image, np.ndarray):
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))) or min(image.shape[:2]) < 1:
            raise ValueError(f"image must be an (H, W) or (H, W, 3) array, got shape {image.shape}")
        if image.dtype.kind not in "uifb":
            raise ValueError(f"image must be a numeric array, got dtype {image.dtype}")
        return image, None
    raise ValueError(f"image must be a file path or a numpy array, got {type(image).__name__}")


def _interior_channel(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Grain-interior probability (n, 1, h, w) from logits: sigmoid of 1 class, softmax class 1 of 2."""
    k = logits.shape[1]
    if k == 1:
        return torch.sigmoid(logits.float())
    if k == 2:
        return torch.softmax(logits.float(), dim=1)[:, 1:2]
    raise ValueError(f"model returns {k} classes; grain-interior probability needs 1 (sigmoid) or 2 (softmax, class 1)")


def predict_proba(
    model: nn.Module,
    image: ImageLike,
    *,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Optional[Union[str, torch.device]] = None,
    amp: Optional[bool] = None,
    progress: Union[bool, Callable[[int], None]] = False,
    tta: Union[bool, str, None] = None,
    rescale: Union[None, str, float] = None,
) -> np.ndarray:
    """Grain-interior probability map (float32 (H, W) in [0, 1]) at the image's own resolution.

    ``image``: a file path or an (H, W) / (H, W, 3) array (uint8, uint16 or float).  ``model``: a grainseg
    model (its ``preprocessing`` and ``in_chans`` are used; any nn.Module returning logits works, with
    the default preprocessing).  ``device`` defaults to the model's; ``amp`` (float16 autocast) defaults to
    on for CUDA; ``progress``: True for a tqdm bar over tiles, or a callable given the number of tiles
    done.  ``tta``: test-time augmentation, ``"flips"`` (4 views), ``"d4"`` or True (8: flips and 90-degree
    rotations) or ``"hflip"``, averaging the probabilities (:class:`grainseg.inference.tta.TTA`; off by
    default: on ExONE val it gains 0.001 Dice for 3-7x the time).  ``rescale``: None (the image as the
    model's preprocessing scales it, as the evaluation measures), a factor (> 1 enlarges the grains), or
    ``"auto"``: the factor at which the predicted grains have the size of the training grains
    (:mod:`grainseg.inference.rescale`; needs ``preprocessing["grain_intercept_px"]``).  ValueError when the
    image or the resulting probability map holds NaN (a broken model would otherwise look like an image
    without grains).  See the module docstring for the scaling and tiling.
    """
    return predict_proba_rescaled(model, image, overlap=overlap, batch_size=batch_size, device=device, amp=amp,
                                  progress=progress, tta=tta, rescale=rescale)[0]


def _check_rescale(rescale: Union[None, str, float]) -> Union[None, str, float]:
    if rescale is None or rescale == "none":
        return None
    if rescale == "auto":
        return "auto"
    if isinstance(rescale, (int, float)) and not isinstance(rescale, bool) and math.isfinite(rescale) \
            and RESCALE_RANGE[0] <= rescale <= RESCALE_RANGE[1]:
        return float(rescale)
    raise ValueError(f"rescale must be None, 'none', 'auto' or a factor in [{RESCALE_RANGE[0]:g}, "
                     f"{RESCALE_RANGE[1]:g}], got {rescale!r}")


def predict_proba_rescaled(
    model: nn.Module,
    image: ImageLike,
    *,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Optional[Union[str, torch.device]] = None,
    amp: Optional[bool] = None,
    progress: Union[bool, Callable[[int], None]] = False,
    tta: Union[bool, str, None] = None,
    rescale: Union[None, str, float] = "auto",
) -> Tuple[np.ndarray, Optional[Dict[str, Any]]]:
    """(:func:`predict_proba`, the rescale record): ``factor`` used, and for ``"auto"`` the reference and
    predicted intercepts (network-input px), the passes and a ``note`` when the search stopped short."""
    from grainseg.data.transforms import image_to_input

    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch nn.Module (e.g. from grainseg.from_pretrained), got {type(model).__name__}")
    tta_name = resolve_tta(tta)
    rescale = _check_rescale(rescale)
    arr, source = _load_image(image)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"image {source or '(array)'} holds {int((~np.isfinite(arr)).sum())} NaN / infinite "
                         "pixel(s); replace them before segmenting")
    prep = normalize_preprocessing(getattr(model, "preprocessing", None))
    reference = prep.get("grain_intercept_px")
    if rescale == "auto" and reference is None:
        raise ValueError(f"rescale='auto' needs the model's preprocessing['grain_intercept_px'] (the mean lineal "
                         f"intercept of its training masks, recorded by the trainer); {type(model).__name__} has "
                         "none: pass rescale=None or a factor")
    in_chans = int(getattr(model, "in_chans", 3))
    h, w = arr.shape[:2]
    base = scaled_size((h, w), prep)
    run_device = torch.device(resolve_device(device, option="device")) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    model = model.to(run_device)
    net = model if tta_name == "none" else TTA(model, tta_name)
    tile = tuple(prep["input_size"]) if prep["input_size"] else base

    def predict_at(factor: float) -> np.ndarray:
        size = (max(1, round(base[0] * factor)), max(1, round(base[1] * factor)))
        x = image_to_input(arr, {**prep, "input_size": list(size)}, in_chans)  # (1, C, h', w')
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                prob = sliding_window(x, lambda t: _interior_channel(model, net(t)), tile, overlap=overlap,
                                      batch_size=batch_size, device=run_device, amp=amp, progress=progress)
        finally:
            model.train(was_training)
        if tuple(prob.shape[-2:]) != (h, w):
            from grainseg.data.transforms import resize_image

            prob = resize_image(prob, (h, w))
        bad = int(torch.isnan(prob).sum())
        if bad:  # NaN > threshold is False: without this check a broken model reports "0 grains"
            raise ValueError(f"the probability map of {source or 'the image'} holds {bad} NaN value(s): the model "
                             f"({type(model).__name__}) produced non-finite logits; check its weights for NaN / inf")
        return prob[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)

    if rescale is None:
        return predict_at(1.0), None
    if rescale != "auto":
        return predict_at(rescale), {"factor": rescale}
    from .rescale import find_rescale, line_intercept

    # network-input px per image px at factor 1; the search may enlarge up to MAX_RESCALED_PIXELS
    py, px = base[0] / h, base[1] / w
    top = min(RESCALE_RANGE[1], math.sqrt(MAX_RESCALED_PIXELS / float(base[0] * base[1])))
    return find_rescale(predict_at, lambda prob, g: line_intercept(prob > 0.5, pixel=(py * g, px * g)),
                        float(reference), limits=(RESCALE_RANGE[0], max(1.0, top)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    spec: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
    revision: Optional[str] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model in eval mode, info) for a model name, Hub id or directory; None = the embedded default.

    ``info`` records what was used: ``id``, ``revision`` (the Hub commit when it came from the Hub
    cache, else None), ``sha256`` of the weights file, and the card's ``grain_size_validation`` (the
    model's measured G error, which the report adds to its G intervals) when the config has one.  The
    default is read only from the package (FileNotFoundError with a clear message when its weights are
    absent): no network.
    """
    from grainseg.models import SegmentationModel
    from grainseg.models.loading import bundled_dir, resolve_pretrained

    location = "cpu" if device is None else resolve_device(device, option="device")  # checked before any lookup
    if spec is None:
        folder = bundled_dir(DEFAULT_MODEL.split("/", 1)[1])
        if folder is None:
            raise FileNotFoundError(
                f"the embedded default model {DEFAULT_MODEL} is not installed (expected config.json and "
                f"model.safetensors in grainseg/weights/{DEFAULT_MODEL.split('/', 1)[1]}/); pass --model DIR "
                "with a directory saved by model.save_pretrained()"
            )
        model_id, source = DEFAULT_MODEL, folder
    else:
        if not isinstance(spec, (str, Path)) or not str(spec):
            raise ValueError(f"model must be a registered pretrained id, a Hub repo id or a directory, got {spec!r}")
        model_id, source = str(spec), spec
    config, weights = resolve_pretrained(source, revision=revision or None)  # looked up once, loaded from there
    hub_revision = weights.parent.name if weights.parent.parent.name == "snapshots" else None
    model = SegmentationModel.from_files(config, weights, map_location=location, name=str(source))
    info = {
        "id": model_id,
        "revision": hub_revision or revision,
        "sha256": _sha256(weights),
        "architecture": type(model).__name__,
        "preprocessing": dict(getattr(model, "preprocessing", {}) or {}),
        **_card_error(model),
    }
    return model.eval(), info


def _card_error(model: nn.Module) -> Dict[str, Any]:
    """The model's ``grain_size_validation`` (from its card) as an info entry, or nothing."""
    validation = getattr(model, "grain_size_validation", None)
    return {"grain_size_validation": validation} if validation else {}


def analyze(
    image: ImageLike,
    model: Optional[Union[nn.Module, str, Path]] = None,
    scale: Optional[float] = None,
    *,
    threshold: float = 0.5,
    min_grain_area: int = 10,
    watershed: bool = False,
    method: str = "watershed",
    core: float = 0.8,
    sigma: float = 1.0,
    min_core_frac: float = 0.05,
    direct_link: float = DEFAULT_DIRECT_LINK,
    device: Optional[Union[str, torch.device]] = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    amp: Optional[bool] = None,
    progress: Union[bool, Callable[[int], None]] = False,
    model_info: Optional[Dict[str, Any]] = None,
    tta: Union[bool, str, None] = None,
    rescale: Union[None, str, float] = DEFAULT_RESCALE,
) -> GrainReport:
    """Segment a micrograph and measure its grains: a :class:`~grainseg.grains.GrainReport`.

    ``model``: a loaded model, a name / Hub id / directory, or None for the embedded default.
    ``scale``: micrometres per pixel; with it sizes are in um and ASTM E112 G is computed, without it
    sizes are in pixels and G is None (the summary says why).  ``method``, ``threshold``, ``core``,
    ``sigma``, ``min_core_frac``, ``min_grain_area``, ``watershed``: how grains are found in the
    probability (:func:`grainseg.grains.instances.segment_grains`; the default floods the boundary
    probability from high-probability cores, which closes boundary gaps).  ``direct_link``: the direct
    E112 count also crosses the regions of probability below it that touch the thresholded boundary
    (:func:`grainseg.grains.intercepts.linked_boundary`).  ``progress``: as for
    :func:`predict_proba`, and ``tta`` and ``rescale`` (recorded in the report's model record; ``"auto"``
    falls back to no rescaling, with a warning, for a model that does not record its training grain
    size).  ``model_info``: what the report records about the model (default: the ``info`` of
    :func:`load_model`, or the name of a model instance).
    """
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        raise ValueError(f"scale must be a positive number of micrometres per pixel, got {scale!r}")
    if isinstance(model, nn.Module):
        info: Dict[str, Any] = {"id": getattr(model, "model_name", None) or type(model).__name__, "revision": None,
                                "architecture": type(model).__name__, **_card_error(model)}
    else:
        model, info = load_model(model, device=device)
    if model_info is not None:
        info = model_info
    info = record_tta(info, tta)
    arr, source = _load_image(image)
    prob, info, notes = predict_for_grains(model, arr, info, rescale, overlap=overlap, batch_size=batch_size,
                                           device=device, amp=amp, progress=progress, tta=tta)
    report = GrainReport.from_probability(arr, prob, scale=None if scale is None else float(scale), threshold=threshold,
                                          min_grain_area=min_grain_area, watershed=watershed, method=method, core=core,
                                          sigma=sigma, min_core_frac=min_core_frac, direct_link=direct_link,
                                          model=info, source=source)
    report.warnings.extend(notes)
    return report


def predict_for_grains(model: nn.Module, image: ImageLike, info: Dict[str, Any], rescale: Union[None, str, float],
                       **kwargs: Any) -> Tuple[np.ndarray, Dict[str, Any], List[str]]:
    """(probability, model record with the rescale, warnings) for a grain measurement: as
    :func:`predict_proba_rescaled`, except that ``"auto"`` on a model that does not record its training
    grain size falls back to no rescaling with a warning instead of an error."""
    notes: List[str] = []
    if _check_rescale(rescale) == "auto" and normalize_preprocessing(
            getattr(model, "preprocessing", None)).get("grain_intercept_px") is None:
        notes.append("not rescaled to the training grain size: the model does not record it "
                     "(preprocessing['grain_intercept_px'], which the trainer writes; older models lack it)")
        rescale = None
    prob, record = predict_proba_rescaled(model, image, rescale=rescale, **kwargs)
    if record is not None:
        info = {**info, "rescale": record}
        if record.get("note"):
            notes.append(record["note"])
    return prob, info, notes
