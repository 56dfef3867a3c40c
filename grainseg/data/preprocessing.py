"""The preprocessing record every model carries, and the size an image is fed to the network at.

A record is ``{"normalize": "minmax", "input_size": [256, 256], "train_image_size": None}``: the
normalisation (:data:`NORMALIZATIONS`; ``"minmax"`` is per-image min-max to [0, 1], the paper's), the
network's training input size and the size of the training images before resizing (filled in by the
trainer).  The trainer also records ``grain_intercept_px``, the mean lineal intercept of the training
masks in network-input pixels, which ``rescale="auto"`` of :func:`grainseg.inference.predict_proba`
matches, and ``boundary_width_px``, the mean width of the training masks' boundary bands in
network-input pixels, which ``grainseg finetune --boundary-grow auto`` widens thinner labels to (both
optional: older models lack them).  :func:`normalize_preprocessing` fills in the defaults and
validates it; models, datasets and the trainer normalise a record where it enters them, and the
preprocessing functions of :mod:`grainseg.data.transforms` read it.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

__all__ = ["DEFAULT_PREPROCESSING", "NORMALIZATIONS", "normalize_preprocessing", "scaled_size"]

#: Normalisations understood by :func:`grainseg.data.transforms.normalize_image`.
NORMALIZATIONS = ("minmax", "none")

#: The preprocessing record every model carries (per-image min-max to [0, 1]; the network's training
#: input size; the size of the training images before resizing, filled in by the trainer).
DEFAULT_PREPROCESSING: Dict[str, Any] = {"normalize": "minmax", "input_size": [256, 256], "train_image_size": None}


def _check_size_pair(value: Any, name: str) -> Optional[list]:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"preprocessing[{name!r}] must be None or [height, width] positive ints, got {value!r}")
    return [int(v) for v in value]


def normalize_preprocessing(preprocessing: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Fill the defaults into a preprocessing record and validate the known keys (extra keys are kept)."""
    if preprocessing is None:
        return copy.deepcopy(DEFAULT_PREPROCESSING)
    if not isinstance(preprocessing, Mapping):
        raise ValueError(f"preprocessing must be a dict or None, got {type(preprocessing).__name__}")
    out = {**copy.deepcopy(DEFAULT_PREPROCESSING), **copy.deepcopy(dict(preprocessing))}
    if not isinstance(out["normalize"], str) or out["normalize"] not in NORMALIZATIONS:
        raise ValueError(f"preprocessing['normalize'] must be one of {', '.join(map(repr, NORMALIZATIONS))}, "
                         f"got {out['normalize']!r}")
    out["input_size"] = _check_size_pair(out["input_size"], "input_size")
    out["train_image_size"] = _check_size_pair(out["train_image_size"], "train_image_size")
    for key in ("grain_intercept_px", "boundary_width_px"):
        g = out.get(key)
        if g is not None:
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g <= 0:
                raise ValueError(f"preprocessing[{key!r}] must be None or a positive number of px, got {g!r}")
            out[key] = float(g)
    return out


def scaled_size(shape: Sequence[int], preprocessing: Mapping[str, Any]) -> Tuple[int, int]:
    """Size (h, w) at which an image of ``shape`` is fed to the network: scaled by input / training size.

    Without ``train_image_size`` (or ``input_size``) the image keeps its size.
    """
    h, w = int(shape[0]), int(shape[1])
    inp, train = preprocessing.get("input_size"), preprocessing.get("train_image_size")
    if not inp or not train:
        return h, w
    return max(1, round(h * inp[0] / train[0])), max(1, round(w * inp[1] / train[1]))
