"""Intercept counts on ASTM E112 test patterns, with or without closed grains.

E112 (section 13) and E1382 count the intersections P of a test pattern with the grain boundaries;
the grains need not be closed.  Two counts on the same pattern:

- **direct**: runs of boundary pixels met along each test line or circle (a boundary crossed at any
  angle is one run; a run cut by either end of an open line counts one half, as E112 counts a line
  ending in a boundary).  A gap elsewhere in the boundary network changes nothing.  A path that passes
  a triple junction inside a wide band crosses two boundaries in one run: the run counts the distinct
  *zones* it meets less one (a zone is each pixel's nearest connected non-boundary region,
  :func:`boundary_zones`), at least one, so a dangling stroke or a boundary with a gap elsewhere still
  counts once.
- **label**: changes of grain label along the same path in a grain tessellation; a gap that merges
  two grains removes their shared boundary from the count.

Both counts ignore pixel-staircase flicker: a path sampled at nearest pixels crosses a digitised
boundary that runs at a shallow angle to it several times (A B A B, or boundary / grain / boundary),
which on an oblique line or a circle over-counted an isotropic tessellation by 20-30 % (the mean
intercept 26 px at 45 degrees against 35 px along the rows and 35 px for the exact geometry).  So a run
shorter than ``min_run`` px (default :data:`MIN_RUN_PX`) between two runs of the same kind is part of
them: a sliver of grain between two boundary samples, or of a grain between two samples of one other
grain.  No grain or boundary that narrow is resolved in a micrograph; a thin boundary crossed once keeps
its count however short its run.

Patterns (all sampled at ``step`` <= 0.5 px, nearest pixel):

- ``"e112"``: E112's figure 5 fitted into the largest centred square of the image: three concentric
  circles with diameters 3 : 2 : 1 (79.58, 53.05, 26.53 mm in the standard), the largest 95 % of the
  square's side, plus four straight lines across the square through its centre (horizontal, vertical
  and the two diagonals);
- ``"grid"``: parallel lines in ``directions`` orientations (0 = along the rows, counter-clockwise)
  spaced ``spacing`` px apart, covering the whole image: the mean intercept per direction and the
  anisotropy index (largest / smallest directional mean intercept, E1268's spirit).

Lengths are in pixels; :func:`intercept_from_counts` turns a count into E112 G with a scale.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .astm import NO_SCALE_NOTE, _check_scale, _t95, g_from_intercept_mm

__all__ = ["e112_pattern", "line_grid", "boundary_zones", "run_crossings", "count_boundary_runs",
           "count_label_changes", "pattern_intercepts", "anisotropy", "intercept_from_counts",
           "linked_boundary", "check_direct_link", "MIN_INTERSECTIONS", "MIN_RUN_PX", "MIN_ZONE_AREA",
           "DEFAULT_DIRECT_LINK"]

#: E112 asks for about 50 or more intersections per field for a usable estimate.
MIN_INTERSECTIONS = 50

#: Runs shorter than this (px along the path) between two runs of the same kind are sampling flicker.
MIN_RUN_PX = 2.0

#: Non-boundary regions smaller than this (px) are specks inside a band, not grains, for the zones.
MIN_ZONE_AREA = 10

#: The direct count's boundary adds pixels of grain probability below this that touch the thresholded
#: boundary (hysteresis, as Canny links edges): where the model half sees a boundary (its probability
#: dips to 0.6, not below 0.5) the test line still crosses it.  Chosen on the ExONE `grouped` val
#: micrographs: mean |dG| of the direct count 0.112 against 0.207 with the mask alone (0.11-0.17 for
#: 0.6-0.95; docs/analysis.md).
DEFAULT_DIRECT_LINK = 0.7

Path = Tuple[np.ndarray, np.ndarray, bool]  # rows, cols (float), closed


def check_direct_link(link: float, threshold: float, *, name: str = "direct_link",
                      threshold_name: str = "threshold") -> None:
    """ValueError unless ``link`` is a probability in [threshold, 1) (the names are the caller's: the
    argument's or the CLI option's)."""
    if isinstance(link, bool) or not isinstance(link, (int, float, np.floating)) or not threshold <= link < 1:
        raise ValueError(f"{name} must be a probability in [{threshold_name} ({threshold:g}), 1), got {link!r}")


def linked_boundary(probability: np.ndarray, threshold: float = 0.5, link: float = DEFAULT_DIRECT_LINK) -> np.ndarray:
    """Boundary mask for the direct count: ``probability <= threshold``, plus the connected regions of
    ``probability < link`` that touch it.  ``link == threshold`` gives the thresholded mask alone; a
    binary map (a hand-drawn mask) is unchanged by any ``link``."""
    from scipy import ndimage

    p = np.asarray(probability, dtype=np.float32)
    if p.ndim != 2:
        raise ValueError(f"probability must be an (H, W) map, got shape {p.shape}")
    check_direct_link(link, threshold)
    strong = p <= threshold
    if link <= threshold:
        return strong
    regions, n = ndimage.label(p < link)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(regions[strong])] = True
    keep[0] = False
    return strong | keep[regions]


def _segment(p0: Tuple[float, float], p1: Tuple[float, float], step: float) -> Path:
    n = max(2, int(math.ceil(math.hypot(p1[0] - p0[0], p1[1] - p0[1]) / step)) + 1)
    t = np.linspace(0.0, 1.0, n)
    return p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]), False


def _length(path: Path) -> float:
    r, c, closed = path
    d = np.hypot(np.diff(r), np.diff(c)).sum()
    if closed:
        d += math.hypot(r[0] - r[-1], c[0] - c[-1])
    return float(d)


def e112_pattern(shape: Sequence[int], step: float = 0.5) -> List[Path]:
    """The E112 pattern (three circles, four lines) in the centred square of an (H, W) image."""
    h, w = int(shape[0]), int(shape[1])
    side = min(h, w) - 1
    if side < 8:
        raise ValueError(f"image of {h}x{w} px is too small for the E112 test pattern (needs at least 9x9)")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    half = side / 2.0
    paths: List[Path] = []
    for d in (0.95, 0.95 * 2 / 3, 0.95 / 3):
        r = d * half
        n = max(8, int(math.ceil(2 * math.pi * r / step)))
        a = np.arange(n) * (2 * math.pi / n)
        paths.append((cy + r * np.sin(a), cx + r * np.cos(a), True))
    for (dy0, dx0), (dy1, dx1) in (((0, -1), (0, 1)), ((-1, 0), (1, 0)), ((-1, -1), (1, 1)), ((1, -1), (-1, 1))):
        paths.append(_segment((cy + dy0 * half, cx + dx0 * half), (cy + dy1 * half, cx + dx1 * half), step))
    return paths


def line_grid(shape: Sequence[int], angle_deg: float, spacing: float, step: float = 0.5) -> List[Path]:
    """Parallel lines at ``angle_deg`` (0 = along the rows), ``spacing`` px apart, clipped to the image."""
    h, w = int(shape[0]), int(shape[1])
    a = math.radians(angle_deg)
    dr, dc = -math.sin(a), math.cos(a)  # direction (rows grow downwards)
    nr, nc = dc, -dr                   # normal
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    reach = math.hypot(h, w) / 2.0
    paths = []
    for off in np.arange(-reach + spacing / 2.0, reach, spacing):
        # clip the infinite line through (cy + off*nr, cx + off*nc) to the pixel-centre box
        pr, pc = cy + off * nr, cx + off * nc
        lo, hi = -math.inf, math.inf
        for p, d, top in ((pr, dr, h - 1), (pc, dc, w - 1)):
            if abs(d) < 1e-12:
                if not 0 <= p <= top:
                    lo, hi = 1.0, 0.0
                continue
            t0, t1 = sorted(((0 - p) / d, (top - p) / d))
            lo, hi = max(lo, t0), min(hi, t1)
        if hi - lo >= 2 * step:
            paths.append(_segment((pr + lo * dr, pc + lo * dc), (pr + hi * dr, pc + hi * dc), step))
    return paths


def _sample(image: np.ndarray, path: Path) -> np.ndarray:
    r, c, _ = path
    ri = np.clip(np.rint(r).astype(np.int64), 0, image.shape[0] - 1)
    ci = np.clip(np.rint(c).astype(np.int64), 0, image.shape[1] - 1)
    return image[ri, ci]


def _spacing(path: Path) -> float:
    """Distance between neighbouring samples (the patterns sample uniformly)."""
    n = len(path[0])
    return _length(path) / max(1, n if path[2] else n - 1)


def _max_sliver(path: Path, min_run: float) -> int:
    """The most samples a run may hold and still be flicker: its length (samples x spacing) < min_run."""
    if isinstance(min_run, bool) or not isinstance(min_run, (int, float, np.integer, np.floating)) \
            or not math.isfinite(min_run) or min_run < 0:
        raise ValueError(f"min_run must be a finite length >= 0 px, got {min_run!r}")
    spacing = _spacing(path)
    return int(math.ceil(min_run / spacing)) - 1 if spacing > 0 and min_run > 0 else 0


def _linear_runs(v: np.ndarray) -> List[List[int]]:
    starts = np.flatnonzero(v[1:] & ~v[:-1]) + 1
    ends = np.flatnonzero(v[:-1] & ~v[1:])
    if v[0]:
        starts = np.concatenate([[0], starts])
    if v[-1]:
        ends = np.concatenate([ends, [v.size - 1]])
    return [[int(a), int(b)] for a, b in zip(starts, ends)]


def _runs(v: np.ndarray, max_gap: int = 0) -> List[Tuple[int, int]]:
    """(first, last) of each run of True along an open sequence, runs separated by <= ``max_gap`` False
    joined into one."""
    joined: List[List[int]] = []
    for a, b in _linear_runs(v) if v.any() else []:
        if joined and a - joined[-1][1] - 1 <= max_gap:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    return [(a, b) for a, b in joined]


def boundary_runs(boundary: np.ndarray, path: Path, min_run: float = MIN_RUN_PX) -> List[Tuple[int, int]]:
    """(first, last) sample indices of each boundary crossing along a path, in path order.

    Runs of boundary samples, where a sliver of non-boundary shorter than ``min_run`` px between two of
    them is part of one crossing (pixel-staircase flicker).  On a closed path a run that wraps from the
    end to the start is one run, listed from its start near the end with ``last`` clipped to the end; a
    closed path wholly on the boundary has no runs (it crosses nothing).  On an open path a run at
    either end is listed.
    """
    n = len(path[0])
    return [(a, min(a + m - 1, n - 1)) for a, m, _ in run_crossings(boundary, path, min_run)]


def boundary_zones(boundary: np.ndarray, min_area: int = MIN_ZONE_AREA) -> np.ndarray:
    """Zones of influence of the non-boundary regions: every pixel labelled with its nearest region.

    The regions are the 4-connected components of ``~boundary`` of at least ``min_area`` px (smaller ones
    are specks inside a band).  Unlike grains these need no closed boundaries: two grains joined through a
    gap are one region.  The direct count uses them to see two boundaries in one run of boundary pixels.
    """
    from .stats import label_interiors, tessellate_grains

    b = np.asarray(boundary)
    if b.ndim != 2 or b.size == 0:
        raise ValueError(f"boundary must be a non-empty (H, W) mask, got shape {b.shape}")
    return tessellate_grains(label_interiors(~b.astype(bool), min_area=min_area))


def run_crossings(boundary: np.ndarray, path: Path, min_run: float = MIN_RUN_PX,
                  zones: Optional[np.ndarray] = None) -> List[Tuple[int, int, float]]:
    """(first sample, samples, crossings) of each boundary run along a path, in path order.

    Runs as in :func:`boundary_runs` (a run may wrap round a closed path: its samples continue from the
    end to the start).  Without ``zones`` every run is one crossing.  With ``zones``
    (:func:`boundary_zones` of the mask) a run crosses as many boundaries as it meets zones, from the
    region before it to the region after it, less one, and at least one: two where the path passes a
    triple junction inside a wide band, one for a stroke with the same region on both sides or a path
    that meanders along a band between two grains.  A run cut by either end of an open path counts half.
    """
    if zones is not None and np.shape(zones) != np.shape(boundary):
        raise ValueError(f"zones must have the boundary's shape {np.shape(boundary)}, got {np.shape(zones)}")
    v = _sample(boundary, path).astype(bool)
    closed, n = bool(path[2]), v.size
    max_sliver = _max_sliver(path, min_run)
    if not v.any() or (closed and v.all()):
        return []
    shift = 0
    if closed:  # start at the longest stretch of non-boundary samples: then no run wraps round
        start = int(np.flatnonzero(v & ~np.roll(v, 1))[0])
        gaps = _linear_runs(~np.roll(v, -start))
        first, last = max(gaps, key=lambda g: g[1] - g[0])
        if last - first + 1 <= max_sliver:
            return []  # only slivers between the runs: the path lies along one boundary, crossing nothing
        shift = (start + first) % n
    v = np.roll(v, -shift)
    z = None if zones is None else np.roll(_sample(zones, path), -shift)
    out = []
    for a, b in _runs(v, max_sliver):
        k = 1.0
        if z is not None:
            k = float(max(1, len(set(_fold_slivers(z[max(a - 1, 0):b + 2], max_sliver))) - 1))
        if not closed:
            k *= 1.0 - 0.5 * (a == 0) - 0.5 * (b == n - 1)
        out.append(((a + shift) % n, b - a + 1, k))
    return sorted(out)


def count_boundary_runs(boundary: np.ndarray, path: Path, min_run: float = MIN_RUN_PX,
                        zones: Optional[np.ndarray] = None) -> float:
    """Intersections of one path with a boolean boundary mask: the sum of its :func:`run_crossings`
    (one per run without ``zones``; a run cut by either end of an open path counts half)."""
    return float(sum(k for _, _, k in run_crossings(boundary, path, min_run, zones)))


def _fold_slivers(v: np.ndarray, max_sliver: int, closed: bool = False) -> List[Any]:
    """The values of the runs along a sampled path, in order, a run of at most ``max_sliver`` samples
    between two runs of one other value folded into them (flicker).  Closed: starts at a change, so that
    no run wraps round."""
    cut = np.flatnonzero(v[1:] != v[:-1]) + 1
    if cut.size == 0:
        return [v[0]] if v.size else []
    if closed and v[0] == v[-1]:
        v = np.roll(v, -int(cut[0]))
        cut = np.flatnonzero(v[1:] != v[:-1]) + 1
    labels = list(v[np.concatenate([[0], cut])])
    sizes = list(np.diff(np.concatenate([[0], cut, [v.size]])))
    i = 0
    while len(labels) > 2 and i < len(labels):  # drop a sliver between two runs of one label, join them
        m = len(labels)
        if not closed and (i == 0 or i == m - 1):
            i += 1
            continue
        before, after = (i - 1) % m, (i + 1) % m
        if sizes[i] <= max_sliver and labels[before] == labels[after]:
            if after == 0:  # closed, the last run: it and the first run fold into the one before
                sizes[before] += sizes[i] + sizes[0]
                del labels[i], sizes[i]
                del labels[0], sizes[0]
            else:
                sizes[before] += sizes[i] + sizes[after]
                del labels[i:i + 2], sizes[i:i + 2]
            i = max(0, i - 2)  # the joined run may now make a sliver before it foldable
        else:
            i += 1
    return labels


def _label_changes(v: np.ndarray, closed: bool, max_sliver: int) -> int:
    """Changes of value along a sampled path, flicker folded (:func:`_fold_slivers`)."""
    labels = _fold_slivers(v, max_sliver, closed)
    n = len(labels) - 1
    if closed and len(labels) > 1 and labels[0] != labels[-1]:
        n += 1
    return max(n, 0)


def count_label_changes(grains: np.ndarray, path: Path, min_run: float = MIN_RUN_PX) -> float:
    """Intersections of one path with the boundaries of a grain tessellation: label changes.

    A run of one label shorter than ``min_run`` px between two runs of one other label is flicker
    (A B A counts no change); what remains counts one change per neighbouring pair of runs.
    """
    return float(_label_changes(_sample(grains, path), bool(path[2]), _max_sliver(path, min_run)))


def pattern_intercepts(paths: Sequence[Path], boundary: Optional[np.ndarray] = None,
                       grains: Optional[np.ndarray] = None, min_run: float = MIN_RUN_PX,
                       junctions: bool = True) -> Dict[str, Any]:
    """Per-path lengths and counts (``direct`` from ``boundary``, ``label`` from ``grains``).

    ``junctions``: the direct count sees two boundaries in a run that passes a triple junction
    (:func:`count_boundary_runs` with :func:`boundary_zones`); False counts every run once.
    """
    out: Dict[str, Any] = {"lengths_px": [_length(p) for p in paths]}
    if boundary is not None:
        b = np.asarray(boundary).astype(bool)
        zones = boundary_zones(b) if junctions else None
        out["direct"] = [count_boundary_runs(b, p, min_run, zones) for p in paths]
    if grains is not None:
        out["label"] = [count_label_changes(np.asarray(grains), p, min_run) for p in paths]
    return out


def intercept_from_counts(counts: Sequence[float], lengths: Sequence[float], scale: Optional[float] = None,
                          method: str = "") -> Dict[str, Any]:
    """Mean lineal intercept and E112 G (with a 95 % CI from the per-path P_L) from per-path counts."""
    scale = _check_scale(scale)
    p = np.asarray(counts, dtype=np.float64)
    length = np.asarray(lengths, dtype=np.float64)
    total_p, total_l = float(p.sum()), float(length.sum())
    out: Dict[str, Any] = {"method": method, "paths": int(len(p)), "intersections": total_p,
                           "total_line_length_px": total_l}
    p_l = total_p / total_l if total_l > 0 else 0.0
    per = p / np.maximum(length, 1e-12)
    half = _t95(len(p) - 1) * per.std(ddof=1) / math.sqrt(len(p)) if len(p) > 1 else None
    l_px = 1.0 / p_l if p_l > 0 else None
    ci_px = None
    if half is not None and p_l > 0:
        ci_px = [1.0 / (p_l + half), (1.0 / (p_l - half)) if p_l - half > 0 else None]
    warnings = []
    if total_p < MIN_INTERSECTIONS:
        warnings.append(f"only {total_p:g} intersections (E112 asks for about {MIN_INTERSECTIONS} or more): "
                        "G is imprecise; use a larger field or more fields")
    if l_px is None:
        warnings.append("no boundary crosses the test pattern: the mean intercept is longer than the pattern")
    elif total_p < len(p):
        # fewer crossings than test paths: the mean intercept is longer than a path, which cannot measure it
        warnings.append(f"only {total_p:g} crossings on {len(p)} test paths: the mean intercept is longer than "
                        "the paths, so G is not measured (use a larger field or a lower magnification)")
        l_px = ci_px = None
    out["warnings"] = warnings
    out["mean_intercept_px"] = l_px
    if scale is None:
        out.update(mean_intercept_px_ci95=ci_px, G=None, G_ci95=None, note=NO_SCALE_NOTE)
        return out
    out["mean_intercept_um"] = None if l_px is None else l_px * scale
    out["G"] = None if l_px is None else g_from_intercept_mm(l_px * scale / 1000.0)
    out["G_ci95"] = None
    if ci_px is not None:
        out["G_ci95"] = [None if ci_px[1] is None else g_from_intercept_mm(ci_px[1] * scale / 1000.0),
                         g_from_intercept_mm(ci_px[0] * scale / 1000.0)]
    return out


def anisotropy(boundary: np.ndarray, spacing: Optional[float] = None, directions: int = 8,
               scale: Optional[float] = None, junctions: bool = True) -> Dict[str, Any]:
    """Directional mean intercepts from a rotated line grid of the boundary mask (direct count).

    ``spacing`` defaults to 1/12 of the shorter side.  ``anisotropy_index`` is the largest over the
    smallest directional mean intercept (1 for equiaxed grains); None when a direction has no crossing.
    """
    b = np.asarray(boundary).astype(bool)
    if b.ndim != 2 or min(b.shape) < 9:
        raise ValueError(f"boundary must be an (H, W) mask of at least 9x9 px, got shape {b.shape}")
    if not isinstance(directions, (int, np.integer)) or directions < 2:
        raise ValueError(f"directions must be an int >= 2, got {directions!r}")
    spacing = float(spacing) if spacing else max(2.0, min(b.shape) / 12.0)
    u = 1.0 if scale is None else float(scale)
    zones = boundary_zones(b) if junctions else None
    rows = []
    for k in range(directions):
        ang = 180.0 * k / directions
        paths = line_grid(b.shape, ang, spacing)
        p = float(sum(count_boundary_runs(b, path, zones=zones) for path in paths))
        length = float(sum(_length(path) for path in paths))
        rows.append({"angle_deg": ang, "intersections": p, "line_length_px": length,
                     "mean_intercept": (length / p * u) if p > 0 else None})
    vals = [r["mean_intercept"] for r in rows]
    ai = None
    imax = None
    if all(v is not None for v in vals):
        ai = max(vals) / min(vals)
        imax = rows[int(np.argmax(vals))]["angle_deg"]
    return {"unit": "um" if scale is not None else "px", "spacing_px": spacing, "directions": rows,
            "anisotropy_index": ai, "longest_intercept_angle_deg": imax}
