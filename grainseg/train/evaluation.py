"""Evaluating a trained model on a data set, at each image's own resolution (``grainseg evaluate``).

Each image goes through :func:`grainseg.predict_proba` (the model's recorded preprocessing, probability
map resized back to the image's size), so the numbers are what any caller of ``predict_proba`` gets.
Metrics are per image (prediction and mask thresholded at 0.5, as the paper does) and then averaged.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn

from grainseg.data.datasets import SegmentationDataset
from grainseg.train.metrics import METRIC_NAMES, image_metrics, summarize

__all__ = ["evaluate_model", "format_table"]


def evaluate_model(
    model: nn.Module,
    dataset: SegmentationDataset,
    *,
    threshold: float = 0.5,
    tolerance: float = 2.0,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = False,
    tta: Union[bool, str, None] = None,
) -> Dict[str, Any]:
    """{"per_image": [{name, dice, iou, precision, recall, boundary_f1, hd95}], "mean": {...}, "seconds": s}.

    ``tta``: test-time augmentation, as for :func:`~grainseg.inference.predict_proba`."""
    from grainseg.inference import predict_proba

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if len(dataset) == 0:
        raise ValueError(f"{dataset!r} holds no images")
    rows: List[Dict[str, Any]] = []
    iterator = range(len(dataset))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="evaluate", unit="img", file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()
    for i in iterator:
        image, mask = dataset.read_raw(i)
        prob = predict_proba(model, image, device=device, tta=tta)
        rows.append({"name": dataset.names[i], **image_metrics(prob, mask, threshold=threshold, tolerance=tolerance)})
    seconds = time.perf_counter() - t0
    return {"per_image": rows, "mean": summarize([{k: r[k] for k in METRIC_NAMES} for r in rows]),
            "seconds": round(seconds, 2)}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def format_table(result: Dict[str, Any], per_image: bool = True) -> str:
    """A plain-text table: one row per image (optional) and the mean row."""
    cols = ["name", *METRIC_NAMES]
    rows = [[_fmt(r[c]) for c in cols] for r in result["per_image"]] if per_image else []
    mean = result["mean"]
    rows.append([f"mean (n={mean['n_images']})", *[_fmt(mean[c]) for c in METRIC_NAMES]])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r))  # noqa: E731
    sep = "-" * len(line(cols))
    body = [line(r) for r in rows]
    if per_image:
        body.insert(len(body) - 1, sep)
    return "\n".join([line(cols), sep, *body])
