"""``GrainReport``: everything measured on one micrograph, and how it is written to disk.

Built by :func:`grainseg.analyze` (or :meth:`GrainReport.from_probability` from any probability map):
holds the image, the grain-interior probability, the binary mask, the interior instance labels, the
grain tessellation, the per-grain table and the summary (counts, sizes, ASTM E112 G by both methods).
"""
from __future__ import annotations

from io import BytesIO as _BytesIO
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from grainseg._json import dumps

from .astm import (DEFAULT_FIELDS, DEFAULT_LINES, NO_SCALE_NOTE, intercept, intervals_with_model_error,
                   model_error_rms, planimetric)
from .instances import DEFAULT_INSTANCE_PARAMS, segment_grains
from .intercepts import (DEFAULT_DIRECT_LINK, anisotropy, e112_pattern, intercept_from_counts, linked_boundary,
                         pattern_intercepts)
from .plots import pattern_overlay, size_distribution_png
from .stats import grain_table, table_to_csv

#: Which count ``G_intercept`` uses (chosen on the ExONE ``grouped`` val micrographs, where it beat the
#: direct boundary count: mean |dG| 0.09 against 0.16).
G_INTERCEPT_COUNT = ("label changes of the grain tessellation along 10 horizontal + 10 vertical test lines "
                     "(Heyn); the direct boundary-crossing count on the E112 pattern is reported beside it")

#: Plausible ASTM E112 G: outside it the scale or the segmentation is almost surely wrong.
G_PLAUSIBLE = (-3.0, 20.0)

__all__ = ["GrainReport", "OUTPUT_SUFFIXES"]

#: File name endings written by :meth:`GrainReport.save` (``<stem><suffix>``).
OUTPUT_SUFFIXES = {
    "probability": "_prob.png",
    "mask": "_mask.png",
    "overlay": "_overlay.png",
    "pattern": "_e112.png",
    "sizes": "_sizes.png",
    "labels": "_labels.tif",
    "grains": "_grains.csv",
    "summary": "_summary.json",
}


def _stat(values: np.ndarray, fn) -> Optional[float]:
    return float(fn(values)) if len(values) else None


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any (H, W[, 3]) image -> uint8 RGB for display (min-max stretched unless already uint8)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = np.nanmin(f), np.nanmax(f)
        img = ((f - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8) if hi > lo else np.zeros(f.shape, np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img


@dataclass
class GrainReport:
    """Grain analysis of one micrograph (see the module docstring); lengths in um with ``scale``, else px."""

    image: np.ndarray
    probability: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    grains: np.ndarray
    table: Dict[str, np.ndarray]
    scale: Optional[float] = None
    threshold: float = 0.5
    model: Dict[str, Any] = field(default_factory=dict)
    source: Optional[str] = None
    astm: Dict[str, Any] = field(default_factory=dict)
    instances: Dict[str, Any] = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    #: the boundary the direct E112 count and the pattern picture use (None: ``~mask``)
    boundary: Optional[np.ndarray] = None

    @classmethod
    def from_probability(
        cls,
        image: np.ndarray,
        probability: np.ndarray,
        scale: Optional[float] = None,
        threshold: float = 0.5,
        min_grain_area: int = 10,
        watershed: bool = False,
        model: Optional[Dict[str, Any]] = None,
        source: Optional[str] = None,
        lines: int = DEFAULT_LINES,
        fields: Sequence[int] = DEFAULT_FIELDS,
        method: str = DEFAULT_INSTANCE_PARAMS["method"],
        core: float = DEFAULT_INSTANCE_PARAMS["core"],
        sigma: float = DEFAULT_INSTANCE_PARAMS["sigma"],
        min_core_frac: float = DEFAULT_INSTANCE_PARAMS["min_core_frac"],
        direct_link: float = DEFAULT_DIRECT_LINK,
    ) -> "GrainReport":
        """Grains from a grain-interior probability map, measured (the analysis after the model).

        ``method``, ``threshold``, ``core``, ``sigma``, ``min_core_frac``, ``min_grain_area``: see
        :func:`grainseg.grains.instances.segment_grains` (``watershed`` is that function's
        ``distance_watershed``, for the ``"threshold"`` method).  ``lines``: test lines per direction
        of the Heyn count; ``fields``: sub-field grid of the planimetric CI.  ``direct_link``: the direct
        E112 count also counts the regions of probability < ``direct_link`` that touch the thresholded
        boundary (:func:`grainseg.grains.intercepts.linked_boundary`; ``threshold``: the mask alone).
        """
        prob = np.asarray(probability, dtype=np.float32)
        if prob.ndim != 2:
            raise ValueError(f"probability must be an (H, W) map, got shape {prob.shape}")
        if tuple(np.asarray(image).shape[:2]) != prob.shape:
            raise ValueError(f"image {np.asarray(image).shape[:2]} and probability {prob.shape} sizes differ")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        # segment_grains checks the parameters as given; the record holds them normalised
        labels, grains = segment_grains(prob, method=method, threshold=threshold, core=core, sigma=sigma,
                                        min_core_frac=min_core_frac, min_grain_area=min_grain_area,
                                        distance_watershed=watershed)
        params = {"method": method, "threshold": float(threshold), "core": float(core), "sigma": float(sigma),
                  "min_core_frac": float(min_core_frac), "min_grain_area": int(min_grain_area),
                  "distance_watershed": bool(watershed)}
        mask = prob > threshold
        boundary = linked_boundary(prob, threshold, direct_link)
        report = cls.from_grains(image, prob, mask, labels, grains, scale=scale, lines=lines, fields=fields,
                                 model=model, source=source, threshold=threshold, boundary=boundary)
        report.instances = {**params, "direct_link": float(direct_link)}
        return report

    @classmethod
    def from_grains(cls, image: np.ndarray, probability: np.ndarray, mask: np.ndarray, labels: np.ndarray,
                    grains: np.ndarray, scale: Optional[float] = None, lines: int = DEFAULT_LINES,
                    fields: Sequence[int] = DEFAULT_FIELDS, model: Optional[Dict[str, Any]] = None,
                    source: Optional[str] = None, threshold: float = 0.5,
                    boundary: Optional[np.ndarray] = None) -> "GrainReport":
        """Measure given grains: table, planimetric and Heyn G, E112-pattern counts, anisotropy, warnings.

        Also used for hand-drawn masks (``grainseg validate`` measures truth and prediction alike).
        ``boundary``: what the direct E112 count and the anisotropy cross (default: ``~mask``).
        """
        mask = np.asarray(mask).astype(bool)
        boundary = ~mask if boundary is None else np.asarray(boundary).astype(bool)
        if boundary.shape != mask.shape:
            raise ValueError(f"boundary {boundary.shape} and mask {mask.shape} sizes differ")
        table = grain_table(grains, labels, scale)
        warnings = []
        astm: Dict[str, Any] = {}
        whole = bool(grains.any()) and int(grains.max()) == 1 and len(np.unique(grains)) == 1
        if not grains.any() and mask.any():
            warnings.append(f"no grains found although {100 * mask.mean():.0f} % of the pixels are grain interior: "
                            "every region was smaller than min_grain_area (--min-grain-area) px")
        elif not grains.any():
            warnings.append("no grains found: every pixel is boundary (wrong polarity or an image of no grains?)")
        elif whole:
            warnings.append("one grain covers the whole image: no boundary was found, G is not defined")
        if grains.any() and not whole:  # one grain as large as the field: its size, and G, are unknown
            astm = {"planimetric": planimetric(grains, scale, fields), "intercept": intercept(grains, scale, lines)}
        try:
            paths = e112_pattern(mask.shape)
        except ValueError as err:
            warnings.append(str(err))
        else:
            counts = pattern_intercepts(paths, boundary=boundary, grains=grains if grains.any() else None)
            astm["intercept_e112_direct"] = intercept_from_counts(
                counts["direct"], counts["lengths_px"], scale, "direct boundary crossings on the E112 pattern")
            if "label" in counts:
                astm["intercept_e112_label"] = intercept_from_counts(
                    counts["label"], counts["lengths_px"], scale, "grain label changes on the E112 pattern")
            astm["anisotropy"] = anisotropy(boundary, scale=scale)
        if "intercept" in astm and astm["intercept"]["intersections"] < 50:
            warnings.append(f"only {astm['intercept']['intersections']} intersections on the Heyn test lines "
                            "(E112 asks for about 50 or more): G_intercept is imprecise")
        for key in ("planimetric", "intercept"):
            g = astm.get(key, {}).get("G")
            if g is not None and not G_PLAUSIBLE[0] <= g <= G_PLAUSIBLE[1]:
                warnings.append(f"G {key} = {g:.2f} is outside the plausible range {G_PLAUSIBLE[0]:g}..{G_PLAUSIBLE[1]:g}:"
                                " check --scale (micrometres per pixel)")
        return cls(image=np.asarray(image), probability=np.asarray(probability, np.float32), mask=mask,
                   labels=np.asarray(labels, np.int32), grains=np.asarray(grains, np.int32), table=table,
                   scale=scale, threshold=float(threshold), model=dict(model or {}), source=source, astm=astm,
                   warnings=warnings, boundary=boundary)

    # ------------------------------------------------------------------ views
    @property
    def unit(self) -> str:
        """``"um"`` with a scale, ``"px"`` without."""
        return "um" if self.scale is not None else "px"

    @property
    def grain_count(self) -> int:
        """Number of grains found (border grains included)."""
        return int(len(self.table["label"]))

    @property
    def summary(self) -> Dict[str, Any]:
        """JSON-able summary: counts, mean / median sizes, ASTM E112 G (both methods), model id and revision."""
        from grainseg._version import __version__

        u = self.unit
        area = self.table[f"area_{u}2"]
        diam = self.table[f"equivalent_diameter_{u}"]
        inner = ~self.table["touches_border"]
        out: Dict[str, Any] = {
            "source": self.source,
            "image_size": [int(self.mask.shape[0]), int(self.mask.shape[1])],
            "scale_um_per_px": self.scale,
            "unit": u,
            "threshold": self.threshold,
            "grain_count": self.grain_count,
            "border_grain_count": int(np.count_nonzero(~inner)),
            "boundary_fraction": float(1.0 - self.mask.mean()),
            f"mean_area_{u}2": _stat(area, np.mean),
            f"median_area_{u}2": _stat(area, np.median),
            f"mean_equivalent_diameter_{u}": _stat(diam, np.mean),
            f"median_equivalent_diameter_{u}": _stat(diam, np.median),
            f"mean_area_non_border_{u}2": _stat(area[inner], np.mean),
            f"median_equivalent_diameter_non_border_{u}": _stat(diam[inner], np.median),
            "astm_e112": {
                "G_planimetric": self.astm.get("planimetric", {}).get("G"),
                "G_planimetric_ci95": self.astm.get("planimetric", {}).get("G_ci95"),
                "G_intercept": self.astm.get("intercept", {}).get("G"),
                "G_intercept_ci95": self.astm.get("intercept", {}).get("G_ci95"),
                "G_intercept_count": G_INTERCEPT_COUNT,
                "G_intercept_direct_e112": self.astm.get("intercept_e112_direct", {}).get("G"),
                "G_intercept_direct_e112_ci95": self.astm.get("intercept_e112_direct", {}).get("G_ci95"),
                **self.astm,
            },
            "instances": self.instances,
            "warnings": list(self.warnings),
            "model": self.model,
            "grainseg_version": __version__,
        }
        if self.scale is None:
            out["astm_e112"]["note"] = NO_SCALE_NOTE
        else:
            out["astm_e112"].update(self._model_error())
        return out

    def _model_error(self) -> Dict[str, Any]:
        """The 95 % intervals of G widened by the model's validated error (its card's
        ``grain_size_validation``), or a note that the model records none."""
        val = (self.model or {}).get("grain_size_validation")
        if not val:
            return {"model_error": None, "model_error_note": MODEL_ERROR_MISSING}
        wide = intervals_with_model_error(self.astm, model_error_rms(val))
        out: Dict[str, Any] = {"model_error": val}
        for k, interval in wide.items():
            out[f"G_{k}_ci95_with_model_error"] = interval
        out["model_error_note"] = (f"the *_with_model_error intervals add the model's rms dG on "
                                   f"{val.get('data', 'held-out micrographs')} to the sampling interval; "
                                   f"validated for {val.get('material', 'one material')} only")
        return out

    def to_csv(self, path: Optional[Union[str, Path]] = None, overwrite: bool = False) -> str:
        """The per-grain table as CSV text; also written to ``path`` (refusing to replace a file unless ``overwrite``)."""
        text = table_to_csv(self.table)
        if path is not None:
            _write_bytes(Path(path), text.encode("utf-8"), overwrite)
        return text

    def overlay(self, color: Tuple[int, int, int] = (255, 40, 40), thickness: int = 1) -> np.ndarray:
        """uint8 RGB image with the predicted grain boundaries drawn in ``color`` over the micrograph."""
        from skimage.morphology import dilation, disk
        from skimage.segmentation import find_boundaries

        rgb = _as_rgb_uint8(self.image).copy()
        edges = find_boundaries(self.grains, mode="inner")
        if thickness > 1:
            edges = dilation(edges, disk(thickness // 2))
        rgb[edges] = np.asarray(color, dtype=np.uint8)
        return rgb

    # ------------------------------------------------------------------ files
    @staticmethod
    def output_paths(out_dir: Union[str, Path], stem: str) -> Dict[str, Path]:
        """The files :meth:`save` writes, by kind."""
        return {k: Path(out_dir) / f"{stem}{s}" for k, s in OUTPUT_SUFFIXES.items()}

    def save(self, out_dir: Union[str, Path], stem: str, overwrite: bool = False) -> Dict[str, Path]:
        """Write probability (16-bit PNG), mask (PNG, white = interior), overlay, the E112 pattern with its
        crossings, the size distribution (only with matplotlib), labels (uint32 TIFF), CSV, JSON.

        Refuses (FileExistsError, nothing written) when any of them exists, unless ``overwrite``.
        """
        from PIL import Image

        paths = self.output_paths(out_dir, stem)
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite / overwrite=True to replace")
        Path(out_dir).mkdir(parents=True, exist_ok=True)

        def png(arr: np.ndarray) -> bytes:
            buf = _BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            return buf.getvalue()

        def tif(arr: np.ndarray) -> bytes:
            import tifffile

            buf = _BytesIO()
            tifffile.imwrite(buf, arr, compression="zlib")
            return buf.getvalue()

        prob16 = (np.clip(self.probability, 0, 1) * 65535 + 0.5).astype(np.uint16)
        blobs = {
            "probability": png(prob16),
            "mask": png(self.mask.astype(np.uint8) * 255),
            "overlay": png(self.overlay()),
            "pattern": png(self.pattern_overlay()) if min(self.mask.shape) >= 9 else None,
            "sizes": self.size_distribution_png(),
            "labels": tif(self.labels.astype(np.uint32)),
            "grains": table_to_csv(self.table).encode("utf-8"),
            "summary": (dumps(self.summary) + "\n").encode("utf-8"),
        }
        written = {}
        for kind, path in paths.items():
            if blobs[kind] is not None:
                _write_bytes(path, blobs[kind], overwrite)
                written[kind] = path
        return written

    def pattern_overlay(self) -> np.ndarray:
        """uint8 RGB micrograph with the E112 test pattern (yellow) and its boundary crossings (red dots)."""
        return pattern_overlay(_as_rgb_uint8(self.image), ~self.mask if self.boundary is None else self.boundary)

    def size_distribution_png(self) -> Optional[bytes]:
        """PNG of the equivalent-diameter histogram with a log-normal fit (None without matplotlib)."""
        u = self.unit
        return size_distribution_png(self.table[f"equivalent_diameter_{u}"], u, self.scale,
                                     title=Path(self.source).name if self.source else "")


#: Why a report has no interval with the model's error.
MODEL_ERROR_MISSING = ("the model records no grain-size validation (config.json 'grain_size_validation'), so the "
                       "G intervals hold the sampling spread only, not the model's error")


def _write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write a file; ``overwrite`` False opens it exclusively, so an existing file is never replaced."""
    with open(path, "wb" if overwrite else "xb") as f:
        f.write(data)

