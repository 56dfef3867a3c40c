"""Magnification normalisation: feed a micrograph to the model with its grains at the training size.

A segmentation model learns grains of the size its training micrographs show.  Measured on the 4
ExONE ``grouped`` val micrographs resized by 0.5-2x (``benchmarks/scale_robustness.py``), the embedded
default reads G 0.7 too low at half the pixels per grain and 1.2 too high at twice: it merges small
grains and splits large ones, so a micrograph taken at another magnification than 500X gets a wrong G.

``rescale="auto"`` searches for the factor at which the grains the model predicts have the mean lineal
intercept of its training masks (``preprocessing["grain_intercept_px"]``, in network-input pixels,
recorded by the trainer).  The model answers most accurately there, because that is where it was
trained.  Each pass predicts the whole image at one factor; the intercept of the predicted mask along
rows and columns (:func:`line_intercept`) then gives the next factor, by a secant step on log intercept
against log factor (the first step assumes proportionality), until the intercept is within ``tol`` of
the reference.  A micrograph whose first prediction is already within ``keep`` of it (inside the training
set's spread of grain sizes) is kept as it is: at the training magnification this costs nothing extra.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DEFAULT_RESCALE", "line_intercept", "mean_intercept", "training_intercept", "find_rescale",
           "RESCALE_RANGE", "RESCALE_KEEP", "RESCALE_TOL", "RESCALE_PASSES", "MIN_CROSSINGS", "MIN_SLOPE"]

#: The ``rescale`` of :func:`grainseg.inference.analyze`, ``grainseg predict`` and ``grainseg validate``.
DEFAULT_RESCALE = "auto"
#: The factors the search may use (1/4 to 4 times the pixels per side).
RESCALE_RANGE = (0.25, 4.0)
#: Keep the image as it is when its first prediction's intercept is within this ratio of the reference:
#: the grain size is then inside the training set's range (its 32 ExONE micrographs spread 7 % (SD)).
RESCALE_KEEP = 1.10
#: Once rescaling, stop when the predicted intercept is within this ratio of the reference.
RESCALE_TOL = 1.03
#: At most this many predictions of the image.
RESCALE_PASSES = 5
#: A smaller growth of log intercept with log factor between two passes means the model does not see
#: the grains scale (an out-of-domain micrograph): the search stops there with a warning.
MIN_SLOPE = 0.2
#: Fewer boundary crossings than this on the rows and columns: too few grains to estimate their size.
MIN_CROSSINGS = 20


def line_intercept(interior: np.ndarray, step: int = 4, pixel: Sequence[float] = (1.0, 1.0)) -> Tuple[float, float]:
    """(line length, boundary crossings) along every ``step``-th row and column of a grain-interior mask.

    Each run of non-interior pixels is one crossing; a run that touches a line's end counts one half.
    ``pixel``: the (height, width) of a pixel in the unit wanted (column lengths use the first, row
    lengths the second).  The mean lineal intercept is length / crossings; keep the pair to pool images.
    """
    m = np.asarray(interior)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"interior must be a non-empty (H, W) mask, got shape {m.shape}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    b = ~m.astype(bool)
    length = crossings = 0.0
    for lines, size in ((b[::step, :], float(pixel[1])), (b[:, ::step].T, float(pixel[0]))):
        v = lines.astype(np.int8)
        starts = float((np.diff(v, axis=1) == 1).sum() + v[:, 0].sum())
        crossings += starts - 0.5 * float(v[:, 0].sum() + v[:, -1].sum())
        length += lines.shape[0] * (lines.shape[1] - 1) * size
    return length, crossings


def _pooled(pairs: Iterable[Tuple[np.ndarray, Sequence[float]]], step: int) -> Optional[float]:
    """Total length / total crossings over (mask, pixel size) pairs, read one at a time."""
    length = crossings = 0.0
    for m, pixel in pairs:
        le, cr = line_intercept(m, step, pixel)
        length, crossings = length + le, crossings + cr
    return length / crossings if crossings >= MIN_CROSSINGS else None


def mean_intercept(masks: Sequence[np.ndarray], pixels: Optional[Sequence[Sequence[float]]] = None,
                   step: int = 4) -> Optional[float]:
    """Pooled mean lineal intercept of several interior masks (total length / total crossings), or None
    when they hold fewer than :data:`MIN_CROSSINGS` crossings.  ``pixels``: each mask's pixel size."""
    if pixels is not None and len(pixels) != len(masks):
        raise ValueError(f"pixels holds {len(pixels)} pixel sizes for {len(masks)} masks")
    return _pooled(zip(masks, [(1.0, 1.0)] * len(masks) if pixels is None else pixels), step)


def training_intercept(dataset: Any, input_size: Optional[Sequence[int]], step: int = 4,
                       limit: int = 512) -> Optional[float]:
    """The ``grain_intercept_px`` of a training set: the pooled mean intercept of its masks in network-input
    pixels (each mask resized to ``input_size`` as training resizes it; None: at its own size).  ``dataset``:
    any data set with ``read_raw(i) -> (image, mask)`` (:class:`grainseg.data.datasets.SegmentationDataset`,
    the synthetic sets); at most ``limit`` of its masks, evenly spread, read one at a time.  None when
    they hold too few crossings."""
    from grainseg.data.datasets import spread_indices

    def pairs():
        for i in spread_indices(len(dataset), limit):
            m = np.asarray(dataset.read_raw(i)[1]) > 0
            yield m, ((1.0, 1.0) if not input_size else (input_size[0] / m.shape[0], input_size[1] / m.shape[1]))

    return _pooled(pairs(), step)


def find_rescale(predict_at: Callable[[float], np.ndarray], intercept_at: Callable[[np.ndarray, float], Tuple[float, float]],
                 reference: float, keep: Optional[float] = None, tol: Optional[float] = None,
                 passes: Optional[int] = None,
                 limits: Tuple[float, float] = RESCALE_RANGE) -> Tuple[np.ndarray, Dict[str, Any]]:
    """(probability at the chosen factor, record) of the search described in the module docstring.

    ``predict_at(factor)``: the grain-interior probability of the image fed at ``factor``;
    ``intercept_at(probability, factor)``: its :func:`line_intercept` in network-input pixels.  The
    record holds ``factor``, ``reference_px``, ``intercept_px`` (at the factor), ``passes`` (factor,
    intercept) and ``note`` when the search stopped short (too few grains, or no convergence: the pass
    closest to the reference is used).  ``keep``, ``tol``, ``passes``: None reads :data:`RESCALE_KEEP`,
    :data:`RESCALE_TOL`, :data:`RESCALE_PASSES` when called (a benchmark may set them).
    """
    keep = RESCALE_KEEP if keep is None else keep
    tol = RESCALE_TOL if tol is None else tol
    passes = RESCALE_PASSES if passes is None else passes
    if not (isinstance(reference, (int, float)) and math.isfinite(reference) and reference > 0):
        raise ValueError(f"reference must be a positive intercept in px, got {reference!r}")
    if not (tol > 1 and keep > 1):
        raise ValueError(f"keep and tol must be ratios > 1, got {keep!r}, {tol!r}")
    lo, hi = math.log(limits[0]), math.log(limits[1])
    hist: List[Tuple[float, float, np.ndarray]] = []  # (log factor, log intercept - log reference, prob)
    x, note = 0.0, None
    for k in range(max(1, passes)):
        g = math.exp(x)
        prob = predict_at(g)
        length, crossings = intercept_at(prob, g)
        if crossings < MIN_CROSSINGS:
            if not hist:
                note = (f"too few grains to estimate their size ({crossings:g} boundary crossings on the rows and "
                        f"columns, {MIN_CROSSINGS} needed): not rescaled")
                return prob, {"factor": 1.0, "reference_px": reference, "intercept_px": None,
                              "passes": [[1.0, None]], "note": note}
            note = (f"the search for the training grain size stopped: at factor {g:.3g} the image holds too few "
                    f"grains to measure ({crossings:g} boundary crossings)")
            break  # keep the best pass so far
        y = math.log(length / crossings) - math.log(reference)
        hist.append((x, y, prob))
        if abs(y) < math.log(keep if k == 0 else tol):
            break
        if len(hist) == 1:
            slope = 1.0  # the intercept grows at most in proportion: this step does not overshoot
        else:
            (x0, y0, _), (x1, y1, _) = hist[-2], hist[-1]
            slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 1.0
            if slope < MIN_SLOPE:
                note = (f"the predicted grain size does not follow the magnification (factor {math.exp(x0):.3g} -> "
                        f"{math.exp(x1):.3g}: intercept {reference * math.exp(y0):.3g} -> {reference * math.exp(y1):.3g} "
                        "px): the micrograph may lie outside the model's training domain; G is unreliable")
                break
            slope = min(slope, 1.5)
        nx = min(max(x - y / slope, lo), hi)
        if nx == x:
            break  # at a limit of the range
        x = nx
    best = min(hist, key=lambda h: abs(h[1]))
    if abs(best[1]) >= math.log(keep if len(hist) == 1 else tol) and note is None:
        note = (f"the search for the training grain size did not converge in {len(hist)} passes: factor "
                f"{math.exp(best[0]):.3g} gives an intercept {math.exp(best[1]):.3g}x the training one")
    return best[2], {"factor": math.exp(best[0]), "reference_px": reference,
                     "intercept_px": reference * math.exp(best[1]),
                     "passes": [[math.exp(h[0]), reference * math.exp(h[1])] for h in hist], "note": note}
