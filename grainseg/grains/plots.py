"""Pictures of a grain analysis: the E112 test pattern on the micrograph, and the size distribution.

:func:`pattern_overlay` needs only numpy (paths drawn in yellow, each direct boundary crossing marked
by a red dot).  :func:`size_distribution_png` needs matplotlib (``pip install 'grainseg[plot]'``):
a histogram of equivalent diameters on a log axis with a fitted log-normal, and, with a scale, the
ASTM E112 G of a grain of that size on a second axis (the mean intercept of a disc, ``pi d / 4``).  Without matplotlib it returns None and the caller says so.
"""
from __future__ import annotations

import math
from io import BytesIO
from typing import Optional

import numpy as np

from .intercepts import boundary_zones, e112_pattern, run_crossings

__all__ = ["pattern_overlay", "size_distribution_png", "have_matplotlib"]


def _dot(img: np.ndarray, r: float, c: float, radius: int, color) -> None:
    h, w = img.shape[:2]
    r0, c0 = int(round(r)), int(round(c))
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if dr * dr + dc * dc <= radius * radius and 0 <= r0 + dr < h and 0 <= c0 + dc < w:
                img[r0 + dr, c0 + dc] = color


def pattern_overlay(rgb: np.ndarray, boundary: np.ndarray, line=(255, 220, 0), mark=(230, 0, 0)) -> np.ndarray:
    """uint8 RGB copy of ``rgb`` with the E112 pattern drawn and its boundary crossings marked: one dot
    per crossing of the direct count, spread along a run that crosses several boundaries (a triple
    junction inside a band)."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    b = np.asarray(boundary).astype(bool)
    h, w = b.shape
    radius = max(2, round(min(h, w) / 250))
    zones = boundary_zones(b)
    for rows, cols, closed in e112_pattern(b.shape):
        ri = np.clip(np.rint(rows).astype(int), 0, h - 1)
        ci = np.clip(np.rint(cols).astype(int), 0, w - 1)
        out[ri, ci] = line
        for first, samples, crossings in run_crossings(b, (rows, cols, closed), zones=zones):
            dots = max(1, int(round(crossings)))
            for j in range(dots):
                k = (first + (2 * j + 1) * samples // (2 * dots)) % len(rows)
                _dot(out, rows[k], cols[k], radius, mark)
    return out


def have_matplotlib() -> bool:
    """Whether the size-distribution plot can be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def size_distribution_png(diameters: np.ndarray, unit: str, scale: Optional[float] = None,
                          title: str = "") -> Optional[bytes]:
    """PNG bytes of the equivalent-diameter histogram with a log-normal fit; None without matplotlib."""
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .astm import g_from_intercept_mm, intercept_mm_from_g

    d = np.asarray(diameters, dtype=np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    if len(d) >= 2:
        bins = np.logspace(math.log10(d.min()), math.log10(d.max()), min(30, max(5, len(d) // 8)) + 1)
        ax.hist(d, bins=bins, color="#8aa9c8", edgecolor="white", label=f"{len(d)} grains")
        mu, sd = float(np.log(d).mean()), float(np.log(d).std(ddof=1))
        if sd > 0:
            x = np.logspace(math.log10(d.min()), math.log10(d.max()), 200)
            pdf = np.exp(-(np.log(x) - mu) ** 2 / (2 * sd * sd)) / (x * sd * math.sqrt(2 * math.pi))
            width = np.diff(np.log(bins)).mean()
            ax.plot(x, pdf * x * width * len(d), color="#c0392b",
                    label=f"log-normal: median {math.exp(mu):.3g} {unit}, sigma {sd:.2f}")
        ax.set_xscale("log")
        from matplotlib.ticker import ScalarFormatter

        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, "too few grains for a distribution", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"equivalent diameter ({unit})")
    ax.set_ylabel("grains")
    if title:
        ax.set_title(title, fontsize=9)
    if scale is not None and len(d) >= 2:
        # a disc of diameter d has mean lineal intercept pi d / 4 (Cauchy-Crofton), so G(l) per d
        g_of_l, l_of_g = np.vectorize(g_from_intercept_mm), np.vectorize(intercept_mm_from_g)

        def to_g(x):
            return g_of_l(np.maximum(np.asarray(x, dtype=np.float64), 1e-9) * math.pi / 4 / 1000.0)

        def from_g(g):
            return l_of_g(np.asarray(g, dtype=np.float64)) * 1000.0 * 4 / math.pi

        sec = ax.secondary_xaxis("top", functions=(to_g, from_g))
        from matplotlib.ticker import MaxNLocator, ScalarFormatter as _SF

        sec.xaxis.set_major_locator(MaxNLocator(integer=True))
        sec.xaxis.set_major_formatter(_SF())
        sec.xaxis.set_minor_formatter(_SF())
        sec.set_xlabel("ASTM E112 G of a grain of that size (intercept of a disc)")
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
