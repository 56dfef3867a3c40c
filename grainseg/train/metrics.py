"""Segmentation metrics per image, as the paper computes them, and their mean over a data set.

Prediction and mask are both binarised at ``threshold`` (0.5: the paper's Dice is per image, both
thresholded at 0.5, averaged over the test images).  Empty cases are defined, not NaN, for the overlap
metrics: when prediction and mask are both empty, Dice = IoU = precision = recall = 1; when only one is
empty they are 0 (precision with no predicted pixel and a non-empty mask is 0; recall with an empty
mask and some predicted pixels is 0).  Boundary F1 uses the same rule.  HD95 is 0 when both are empty
and NaN (undefined; left out of the mean, which reports how many images it averaged) when only one is.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Union

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "METRIC_NAMES",
    "binarize",
    "matched_f1",
    "dice_score",
    "iou_score",
    "precision_score",
    "recall_score",
    "boundary_map",
    "boundary_f1",
    "hd95",
    "image_metrics",
    "summarize",
]

METRIC_NAMES = ("dice", "iou", "precision", "recall", "boundary_f1", "hd95")
ArrayLike = Union[np.ndarray, torch.Tensor]


def binarize(x: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """(H, W) probabilities / mask (numpy or torch; leading size-1 dims are squeezed) -> bool (H, W), ``> threshold``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {x.shape}")
    return x > threshold if x.dtype != np.bool_ else x


def _pair(pred: ArrayLike, target: ArrayLike, threshold: float):
    p, t = binarize(pred, threshold), binarize(target, threshold)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and mask {t.shape} must have the same shape")
    return p, t


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def dice_score(pred: ArrayLike, target: ArrayLike, threshold: float = 0.5) -> float:
    """2|P & T| / (|P| + |T|) after thresholding; 1 when both are empty."""
    p, t = _pair(pred, target, threshold)
    return _ratio(2 * int((p & t).sum()), int(p.sum() + t.sum()), not p.any() and not t.any())


def iou_score(pred: ArrayLike, target: ArrayLike, threshold: float = 0.5) -> float:
    """|P & T| / |P | T|; 1 when both are empty."""
    p, t = _pair(pred, target, threshold)
    return _ratio(int((p & t).sum()), int((p | t).sum()), not p.any() and not t.any())


def precision_score(pred: ArrayLike, target: ArrayLike, threshold: float = 0.5) -> float:
    """|P & T| / |P|; 1 when both are empty, 0 when only the prediction is empty."""
    p, t = _pair(pred, target, threshold)
    return _ratio(int((p & t).sum()), int(p.sum()), not p.any() and not t.any())


def recall_score(pred: ArrayLike, target: ArrayLike, threshold: float = 0.5) -> float:
    """|P & T| / |T|; 1 when both are empty, 0 when only the mask is empty."""
    p, t = _pair(pred, target, threshold)
    return _ratio(int((p & t).sum()), int(t.sum()), not p.any() and not t.any())


def boundary_map(region: np.ndarray) -> np.ndarray:
    """Pixels of a bool region that touch (4-connectivity) a pixel outside it; the image border is not a boundary."""
    region = np.asarray(region, dtype=bool)
    eroded = ndimage.binary_erosion(region, structure=ndimage.generate_binary_structure(2, 1), border_value=1)
    return region & ~eroded


def _distances_to(boundary: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest pixel of ``boundary`` (non-empty)."""
    return ndimage.distance_transform_edt(~boundary)


def boundary_f1(pred: ArrayLike, target: ArrayLike, tolerance: float = 2.0, threshold: float = 0.5) -> float:
    """F1 of boundary pixels matched within ``tolerance`` pixels (Euclidean) between prediction and mask.

    Precision: fraction of predicted boundary pixels within the tolerance of a mask boundary pixel;
    recall: the converse.  1 when neither has a boundary, 0 when only one has (or only one region is empty).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    p, t = _pair(pred, target, threshold)
    if p.any() != t.any():  # one side empty: nothing can match
        return 0.0
    return matched_f1(boundary_map(p), boundary_map(t), tolerance)


def matched_f1(a: np.ndarray, b: np.ndarray, tolerance: float) -> float:
    """F1 of two sets of pixels (bool maps) matched within ``tolerance`` pixels (Euclidean): precision is
    the fraction of ``a`` within the tolerance of ``b``, recall the converse; 1 when both are empty, 0 when
    only one is."""
    if not a.any() or not b.any():
        return 1.0 if not a.any() and not b.any() else 0.0
    precision = float((_distances_to(b)[a] <= tolerance).mean())
    recall = float((_distances_to(a)[b] <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def hd95(pred: ArrayLike, target: ArrayLike, threshold: float = 0.5) -> float:
    """95th-percentile symmetric Hausdorff distance (pixels) between the boundaries of prediction and mask.

    The larger of the two directed 95th percentiles (the MONAI convention).  0 when both are empty, NaN
    when only one is (undefined).  A region without an inner boundary (e.g. the full image) uses its
    own pixels as its surface.
    """
    p, t = _pair(pred, target, threshold)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return float("nan")
    bp, bt = boundary_map(p), boundary_map(t)
    bp, bt = (bp if bp.any() else p), (bt if bt.any() else t)
    d_pt = _distances_to(bt)[bp]
    d_tp = _distances_to(bp)[bt]
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def image_metrics(pred: ArrayLike, target: ArrayLike, threshold: float = 0.5, tolerance: float = 2.0) -> Dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for one (H, W) probability map and its mask."""
    return {
        "dice": dice_score(pred, target, threshold),
        "iou": iou_score(pred, target, threshold),
        "precision": precision_score(pred, target, threshold),
        "recall": recall_score(pred, target, threshold),
        "boundary_f1": boundary_f1(pred, target, tolerance, threshold),
        "hd95": hd95(pred, target, threshold),
    }


def summarize(per_image: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Mean of every metric over images (NaN entries left out; ``n_<metric>`` counts when any were)."""
    rows: List[Mapping[str, float]] = list(per_image)
    if not rows:
        raise ValueError("summarize needs at least one image's metrics")
    out: Dict[str, float] = {"n_images": len(rows)}
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    for k in keys:
        vals = [float(r[k]) for r in rows if not math.isnan(float(r[k]))]
        out[k] = float(np.mean(vals)) if vals else float("nan")
        if len(vals) != len(rows):
            out[f"n_{k}"] = len(vals)
    return out
