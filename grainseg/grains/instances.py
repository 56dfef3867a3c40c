"""Grain instances from a grain-interior probability map.

Two methods, both returning ``(interiors, grains)`` label images (``grains`` tiles the image):

- ``"watershed"`` (the default, chosen on the ExONE ``grouped`` val micrographs): the probability is
  smoothed (Gaussian, ``sigma`` px); the connected *cores* where it exceeds ``core`` are the markers,
  cores smaller than ``min_core_frac`` x the median core area are dropped (pits, specks: a relative
  size, so it does not depend on the magnification; cores on the image edge need only
  ``min_grain_area / 4`` px, since a grain cut by the edge may be small for real); the boundary probability ``1 - p`` is then
  flooded from the markers.  Every grain is closed by its watershed line, so a gap of a few pixels
  in a predicted boundary no longer merges two grains, as long as each grain has its own core.
  Grains smaller than ``min_grain_area`` px are merged into their neighbours by flooding again
  without their markers.
- ``"threshold"``: the probability thresholded at ``threshold``, connected interiors (specks under
  ``min_grain_area`` dropped), optionally split by a distance-transform watershed, then each
  boundary pixel given to its nearest interior (the method before 0.2; a one-pixel gap merges grains).

Measured on the 4 ``grouped`` val micrographs with the embedded default model (mean |dG| of the
planimetric and intercept G against the hand-drawn masks): threshold 0.18, watershed 0.09
(docs/analysis.md has the table).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

__all__ = ["GRAIN_METHODS", "DEFAULT_INSTANCE_PARAMS", "segment_grains", "check_instance_params"]

#: Instance methods accepted by :func:`segment_grains`.
GRAIN_METHODS = ("watershed", "threshold")

#: Defaults of :func:`segment_grains` (also the CLI's).
DEFAULT_INSTANCE_PARAMS: Dict[str, Any] = {
    "method": "watershed", "threshold": 0.5, "core": 0.8, "sigma": 1.0, "min_core_frac": 0.05,
    "min_grain_area": 10, "distance_watershed": False,
}


def check_instance_params(method: str, threshold: float, core: float, sigma: float, min_core_frac: float,
                          min_grain_area: int, distance_watershed: bool = False, *,
                          names: Optional[Mapping[str, str]] = None) -> None:
    """Raise ValueError naming the first bad parameter.  ``names`` maps a parameter (``"method"``,
    ``"threshold"``, ``"core"``, ``"sigma"``, ``"min_core_frac"``, ``"min_grain_area"``, ``"watershed"``) to
    the caller's name for it (e.g. a CLI option); unmapped parameters keep their own name."""
    def n(key: str) -> str:
        return (names or {}).get(key, key)

    if method not in GRAIN_METHODS:
        raise ValueError(f"{n('method')} must be one of {', '.join(GRAIN_METHODS)}, got {method!r}")
    if distance_watershed and method != "threshold":
        raise ValueError(f"{n('watershed')} applies to {n('method')} 'threshold' only (it splits merged interiors by "
                         f"a distance transform); {n('method')} {method!r} finds the grains without it")
    for name, v in (("threshold", threshold), ("core", core)):
        if not (isinstance(v, (int, float, np.floating)) and 0 < v < 1):
            raise ValueError(f"{n(name)} must be a probability in (0, 1), got {v!r}")
    if not (isinstance(sigma, (int, float, np.floating)) and 0 <= sigma <= 50):
        raise ValueError(f"{n('sigma')} must be a smoothing width in pixels in [0, 50], got {sigma!r}")
    if not (isinstance(min_core_frac, (int, float, np.floating)) and 0 <= min_core_frac < 1):
        raise ValueError(f"{n('min_core_frac')} must be a fraction of the median core area in [0, 1), "
                         f"got {min_core_frac!r}")
    if isinstance(min_grain_area, bool) or not isinstance(min_grain_area, (int, np.integer)) or min_grain_area < 0:
        raise ValueError(f"{n('min_grain_area')} must be a non-negative int (pixels), got {min_grain_area!r}")


def _markers(smooth: np.ndarray, core: float, min_core_frac: float, floor: int) -> np.ndarray:
    from skimage.measure import label

    cores = label(smooth > core, connectivity=1)
    areas = np.bincount(cores.ravel())[1:]
    big = areas[areas >= max(floor, 1)]
    min_area = max(floor, min_core_frac * float(np.median(big))) if len(big) else floor
    keep = np.concatenate([[False], areas >= min_area])
    # a grain cut by the image edge may be small for real: its core needs only the absolute floor
    edge = np.unique(np.concatenate([cores[0], cores[-1], cores[:, 0], cores[:, -1]]))
    edge = edge[edge > 0]
    keep[edge] = areas[edge - 1] >= max(floor // 4, 1)
    return label(keep[cores], connectivity=1).astype(np.int32)


def _flood(smooth: np.ndarray, markers: np.ndarray, min_grain_area: int) -> np.ndarray:
    from skimage.measure import label
    from skimage.segmentation import watershed

    if not markers.any():
        return np.zeros(smooth.shape, np.int32)
    grains = watershed(1.0 - smooth, markers).astype(np.int32)
    if min_grain_area > 1:
        areas = np.bincount(grains.ravel())
        small = np.flatnonzero(areas[1:] < min_grain_area) + 1
        if len(small) and len(small) < grains.max():
            markers = markers.copy()
            markers[np.isin(markers, small)] = 0
            grains = watershed(1.0 - smooth, label(markers > 0, connectivity=1)).astype(np.int32)
    return grains


def segment_grains(
    probability: np.ndarray,
    method: str = "watershed",
    *,
    threshold: float = 0.5,
    core: float = 0.8,
    sigma: float = 1.0,
    min_core_frac: float = 0.05,
    min_grain_area: int = 10,
    distance_watershed: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """``(interiors, grains)`` int32 label images of a grain-interior probability map (module docstring).

    ``interiors``: the grains restricted to ``probability > threshold`` (0 on boundaries);
    ``grains``: every pixel given to a grain (what ASTM E112 counts and grain areas refer to).
    ``distance_watershed`` applies only to the ``"threshold"`` method.
    """
    from scipy.ndimage import gaussian_filter

    from .stats import label_interiors, tessellate_grains

    prob = np.asarray(probability, dtype=np.float32)
    if prob.ndim != 2 or prob.size == 0:
        raise ValueError(f"probability must be a non-empty (H, W) map, got shape {prob.shape}")
    if not np.isfinite(prob).all():
        raise ValueError("probability holds NaN or inf values; check the model's weights")
    check_instance_params(method, threshold, core, sigma, min_core_frac, min_grain_area, distance_watershed)
    if method == "threshold":
        interiors = label_interiors(prob > threshold, min_area=int(min_grain_area), watershed=distance_watershed)
        return interiors, tessellate_grains(interiors)
    smooth = gaussian_filter(prob, float(sigma)) if sigma > 0 else prob
    grains = _flood(smooth, _markers(smooth, float(core), float(min_core_frac), int(min_grain_area)),
                    int(min_grain_area))
    interiors = np.where(prob > threshold, grains, 0).astype(np.int32)
    return interiors, grains
