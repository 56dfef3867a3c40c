"""ASTM E112 grain size number G: planimetric (Jeffries) and mean lineal intercept (Heyn) procedures.

Both work on a *grain tessellation*: an int label image in which every pixel (boundary pixels too)
belongs to a grain, 0 nowhere (see :func:`grainseg.grains.stats.tessellate_grains`).

- Planimetric (E112 section 11): ``N_A = (N_inside + N_intercepted / 2 + N_corner / 4) / A`` for the
  rectangular image field, i.e. grains cut by the field edge count one half and the (usually four)
  grains at the corners one quarter (E112's "+1"); ``G = 3.321928 log10(N_A) - 2.954`` with N_A in
  grains per mm^2 at 1x.  The 95 % confidence interval comes from the spread of N_A over a grid of
  sub-fields (E112 section 15: ``t s / sqrt(n)``, Student t with n - 1 degrees of freedom).
- Intercept (E112 section 12, Heyn): straight horizontal and vertical test lines; every change of grain
  along a line is one boundary intersection P.  ``P_L = sum P / sum L``, the mean lineal intercept
  ``l = 1 / P_L`` and ``G = -6.643856 log10(l_mm) - 3.288``; the 95 % CI from the per-line P_L values.

Without a scale (micrometres per pixel), N_A and l are reported per pixel and G is None (it is defined
only in physical units at 1x); the result says so in ``"note"``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "g_from_grains_per_mm2",
    "g_from_intercept_mm",
    "grains_per_mm2_from_g",
    "intercept_mm_from_g",
    "combined_interval",
    "intervals_with_model_error",
    "jeffries_count",
    "model_error_rms",
    "MODEL_ERROR_METHODS",
    "planimetric",
    "intercept",
    "NO_SCALE_NOTE",
    "DEFAULT_FIELDS",
    "DEFAULT_LINES",
]

#: Why G is missing when no scale is known.
NO_SCALE_NOTE = "G needs a scale: pass the micrometres per pixel (--scale UM_PER_PX / scale=...)"


def _check_scale(scale: Optional[float]) -> Optional[float]:
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)) or not (
        math.isfinite(scale) and scale > 0
    ):
        raise ValueError(f"scale must be a positive number of micrometres per pixel, got {scale!r}")
    return float(scale)


def g_from_grains_per_mm2(n_a: float) -> float:
    """E112 G from the number of grains per mm^2 at 1x (planimetric)."""
    if not n_a > 0:
        raise ValueError(f"grains per mm^2 must be > 0 to give G, got {n_a!r}")
    return 3.321928 * math.log10(n_a) - 2.954


def grains_per_mm2_from_g(g: float) -> float:
    """Inverse of :func:`g_from_grains_per_mm2`."""
    return 10 ** ((g + 2.954) / 3.321928)


def g_from_intercept_mm(l_mm: float) -> float:
    """E112 G from the mean lineal intercept in mm at 1x (Heyn)."""
    if not l_mm > 0:
        raise ValueError(f"mean lineal intercept must be > 0 mm to give G, got {l_mm!r}")
    return -6.643856 * math.log10(l_mm) - 3.288


def intercept_mm_from_g(g: float) -> float:
    """Inverse of :func:`g_from_intercept_mm`."""
    return 10 ** (-(g + 3.288) / 6.643856)


def _t95(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer label image, got shape {labels.shape} dtype {labels.dtype}")
    if labels.size == 0:
        raise ValueError("labels is empty")
    return labels


def jeffries_count(labels: np.ndarray) -> Tuple[int, int, int]:
    """(N_inside, N_intercepted, N_corner) of a rectangular field of a grain tessellation.

    Corner grains hold one of the four corner pixels (one count per corner); intercepted grains touch
    an edge but no corner; the rest are inside.  Label 0 is not a grain.
    """
    labels = _check_labels(labels)
    corners = [labels[0, 0], labels[0, -1], labels[-1, 0], labels[-1, -1]]
    n_corner = sum(1 for c in corners if c != 0)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = set(int(v) for v in edge if v != 0) - set(int(c) for c in corners)
    allg = np.unique(labels)
    n_all = int(np.count_nonzero(allg))
    n_corner_grains = len(set(int(c) for c in corners if c != 0))
    return n_all - len(edge) - n_corner_grains, len(edge), n_corner


#: The default sub-field grid of :func:`planimetric` and test-line count of :func:`intercept` (per direction),
#: shared with :class:`grainseg.grains.report.GrainReport` and the benchmarks so that they measure alike.
DEFAULT_FIELDS: Tuple[int, int] = (3, 3)
DEFAULT_LINES: int = 10


def _field_na(labels: np.ndarray) -> float:
    inside, cut, corner = jeffries_count(labels)
    return (inside + 0.5 * cut + 0.25 * corner) / labels.size


def _fields(shape: Tuple[int, int], grid: Tuple[int, int]) -> List[Tuple[slice, slice]]:
    h, w = shape
    gy, gx = grid
    ys = np.linspace(0, h, gy + 1).round().astype(int)
    xs = np.linspace(0, w, gx + 1).round().astype(int)
    return [(slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])) for i in range(gy) for j in range(gx)
            if ys[i + 1] > ys[i] and xs[j + 1] > xs[j]]


def planimetric(
    labels: np.ndarray, scale: Optional[float] = None, fields: Sequence[int] = DEFAULT_FIELDS
) -> Dict[str, Any]:
    """Jeffries planimetric grain count and G of a grain tessellation (see the module docstring).

    ``fields``: (rows, cols) grid of sub-fields for the 95 % confidence interval ((1, 1): none).
    Returns counts, ``grains_per_mm2`` (or ``grains_per_px2`` without ``scale``), ``G`` and ``G_ci95``.
    """
    labels = _check_labels(labels)
    scale = _check_scale(scale)
    if len(fields) != 2 or min(fields) < 1:
        raise ValueError(f"fields must be (rows, cols) >= 1, got {fields!r}")
    inside, cut, corner = jeffries_count(labels)
    n_a_px = (inside + 0.5 * cut + 0.25 * corner) / labels.size
    per_field = np.array([_field_na(labels[sl]) for sl in _fields(labels.shape, tuple(fields))])
    out: Dict[str, Any] = {
        "method": "planimetric (Jeffries), ASTM E112",
        "n_inside": inside,
        "n_intercepted": cut,
        "n_corner": corner,
        "grain_count_equivalent": inside + 0.5 * cut + 0.25 * corner,
        "area_px2": int(labels.size),
        "fields": len(per_field),
    }
    half = None
    if len(per_field) > 1:
        half = _t95(len(per_field) - 1) * per_field.std(ddof=1) / math.sqrt(len(per_field))
    if scale is None:
        out.update(grains_per_px2=n_a_px, grains_per_px2_ci95=None if half is None else [n_a_px - half, n_a_px + half],
                   G=None, G_ci95=None, note=NO_SCALE_NOTE)
        return out
    px_per_mm2 = (1000.0 / scale) ** 2
    n_a = n_a_px * px_per_mm2
    out["grains_per_mm2"] = n_a
    out["G"] = g_from_grains_per_mm2(n_a) if n_a > 0 else None
    out["G_ci95"] = None
    if half is not None and n_a > 0:
        lo = max(n_a_px - half, 0.0) * px_per_mm2
        hi = (n_a_px + half) * px_per_mm2
        out["grains_per_mm2_ci95"] = [lo, hi]
        out["G_ci95"] = [g_from_grains_per_mm2(lo) if lo > 0 else None, g_from_grains_per_mm2(hi)]
        out["relative_accuracy_pct"] = 100.0 * half / n_a_px
    return out


def combined_interval(g: Optional[float], ci95: Optional[Sequence[Optional[float]]],
                      model_rms: float) -> List[Optional[float]]:
    """A 95 % interval of G that holds the model's error as well as the sampling spread.

    ``ci95``: the sampling interval of G (sub-fields or test lines); ``model_rms``: the root-mean-square
    error of the model's G on held-out micrographs (a model card's ``grain_size_validation``).  Each side
    is ``sqrt(sampling half-width ** 2 + (1.96 model_rms) ** 2)``: the two errors are independent, and a
    sampling interval alone claims a precision the model does not have.  A side is None where the
    sampling interval has none (an open side, or a single field).
    """
    if g is None or ci95 is None:
        return [None, None]
    if isinstance(model_rms, bool) or not isinstance(model_rms, (int, float)) or not model_rms >= 0:
        raise ValueError(f"model_rms must be a non-negative number (G units), got {model_rms!r}")
    m = 1.959964 * float(model_rms)
    lo, hi = ci95
    return [None if lo is None else g - math.hypot(g - lo, m), None if hi is None else g + math.hypot(hi - g, m)]


#: The G methods a model card's ``rms_dG`` may hold (the names ``grainseg validate`` uses), each with the
#: key of its result in a report's ``astm`` record.
MODEL_ERROR_METHODS: Dict[str, str] = {"planimetric": "planimetric", "intercept": "intercept",
                                       "intercept_direct_e112": "intercept_e112_direct"}


def intervals_with_model_error(results: Dict[str, Dict[str, Any]],
                               rms: Dict[str, float]) -> Dict[str, List[Optional[float]]]:
    """:func:`combined_interval` per method: ``results`` is a report's ``astm`` record (``G``, ``G_ci95``
    per result), ``rms`` (:func:`model_error_rms`) the model's error per method of
    :data:`MODEL_ERROR_METHODS`; methods without an rms are left out."""
    found = {k: results.get(MODEL_ERROR_METHODS[k], {}) for k in rms}
    return {k: combined_interval(found[k].get("G"), found[k].get("G_ci95"), v) for k, v in rms.items()}


def model_error_rms(record: Any, where: str = "grain_size_validation") -> Dict[str, float]:
    """The ``rms_dG`` of a model card's ``grain_size_validation`` record, checked: a dict whose
    ``rms_dG`` maps "planimetric" / "intercept" to non-negative numbers (G units).  ValueError naming
    ``where`` otherwise, so that a malformed card fails where it is read, not inside a measurement."""
    expected = ("a dict with 'rms_dG': {'planimetric': float >= 0, 'intercept': float >= 0} and optionally "
                "'intercept_direct_e112': float >= 0 (rms error of G on held-out micrographs)")
    rms = record.get("rms_dG") if isinstance(record, dict) else None
    if not isinstance(rms, dict) or not rms:
        raise ValueError(f"{where} must be {expected}, got {record!r}")
    out: Dict[str, float] = {}
    for k, v in rms.items():
        if k not in MODEL_ERROR_METHODS or isinstance(v, bool) or not isinstance(v, (int, float)) \
                or not math.isfinite(v) or v < 0:
            raise ValueError(f"{where} must be {expected}; its rms_dG has {k!r}: {v!r}")
        out[k] = float(v)
    return out


def _line_positions(n: int, lines: int) -> np.ndarray:
    """``lines`` evenly spaced positions strictly inside 0..n-1 (fewer when n is small)."""
    lines = max(1, min(lines, n))
    return np.unique(np.round((np.arange(lines) + 0.5) * n / lines).astype(int).clip(0, n - 1))


def intercept(labels: np.ndarray, scale: Optional[float] = None, lines: int = DEFAULT_LINES) -> Dict[str, Any]:
    """Heyn mean lineal intercept and G from ``lines`` horizontal plus ``lines`` vertical test lines.

    A line's length is its pixel count; each change of label between neighbouring pixels is one
    intersection.  Returns totals, ``mean_intercept_um`` (or ``_px``), ``G`` and ``G_ci95``.
    """
    labels = _check_labels(labels)
    scale = _check_scale(scale)
    if not isinstance(lines, (int, np.integer)) or lines < 1:
        raise ValueError(f"lines must be a positive int, got {lines!r}")
    h, w = labels.shape
    rows = labels[_line_positions(h, lines)]
    cols = labels[:, _line_positions(w, lines)].T
    counts, lengths = [], []
    for block in (rows, cols):
        counts.append(np.count_nonzero(block[:, 1:] != block[:, :-1], axis=1))
        lengths.append(np.full(len(block), block.shape[1], dtype=np.float64))
    p = np.concatenate(counts).astype(np.float64)
    length = np.concatenate(lengths)
    total_p, total_l = float(p.sum()), float(length.sum())
    p_l = total_p / total_l
    out: Dict[str, Any] = {
        "method": "mean lineal intercept (Heyn), ASTM E112",
        "lines": int(len(p)),
        "intersections": int(total_p),
        "total_line_length_px": total_l,
    }
    per_line = p / length
    half = _t95(len(p) - 1) * per_line.std(ddof=1) / math.sqrt(len(p)) if len(p) > 1 else None
    l_px = 1.0 / p_l if p_l > 0 else None
    ci_px = None
    if half is not None and p_l > 0:
        ci_px = [1.0 / (p_l + half), (1.0 / (p_l - half)) if p_l - half > 0 else None]
    if scale is None:
        out.update(mean_intercept_px=l_px, mean_intercept_px_ci95=ci_px, G=None, G_ci95=None, note=NO_SCALE_NOTE)
        return out
    out["mean_intercept_um"] = None if l_px is None else l_px * scale
    out["mean_intercept_um_ci95"] = None if ci_px is None else [None if v is None else v * scale for v in ci_px]
    out["G"] = None if l_px is None else g_from_intercept_mm(l_px * scale / 1000.0)
    out["G_ci95"] = None
    if ci_px is not None:
        out["G_ci95"] = [None if ci_px[1] is None else g_from_intercept_mm(ci_px[1] * scale / 1000.0),
                         g_from_intercept_mm(ci_px[0] * scale / 1000.0)]
        out["relative_accuracy_pct"] = 100.0 * half / p_l
    if l_px is None:
        out["note"] = "no boundary crosses the test lines: the mean intercept is longer than the image"
    return out
