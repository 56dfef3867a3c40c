"""``GrainReport``: everything measured on one micrograph, and how it is written to disk.

Built by :func:`grainseg.analyze` (or :meth:`GrainReport.from_probability` from any probability map):
holds the image, the grain-interior probability, the binary mask, the interior instance labels, the
grain tessellation, the per-grain table and the summary (counts, sizes, ASTM E112 G by both methods).
"""
from __future__ import annotations

import json
import math
from io import BytesIO as _BytesIO
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .astm import NO_SCALE_NOTE, intercept, planimetric
from .stats import grain_table, label_interiors, table_to_csv, tessellate_grains

__all__ = ["GrainReport", "OUTPUT_SUFFIXES"]

#: File name endings written by :meth:`GrainReport.save` (``<stem><suffix>``).
OUTPUT_SUFFIXES = {
    "probability": "_prob.png",
    "mask": "_mask.png",
    "overlay": "_overlay.png",
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
        lines: int = 10,
        fields: Sequence[int] = (3, 3),
    ) -> "GrainReport":
        """Threshold a grain-interior probability map and measure the grains (the analysis after the model)."""
        prob = np.asarray(probability, dtype=np.float32)
        if prob.ndim != 2:
            raise ValueError(f"probability must be an (H, W) map, got shape {prob.shape}")
        if tuple(np.asarray(image).shape[:2]) != prob.shape:
            raise ValueError(f"image {np.asarray(image).shape[:2]} and probability {prob.shape} sizes differ")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        mask = prob > threshold
        labels = label_interiors(mask, min_area=min_grain_area, watershed=watershed)
        grains = tessellate_grains(labels)
        table = grain_table(grains, labels, scale)
        astm = {"planimetric": planimetric(grains, scale, fields), "intercept": intercept(grains, scale, lines)}
        return cls(image=np.asarray(image), probability=prob, mask=mask, labels=labels, grains=grains, table=table,
                   scale=scale, threshold=float(threshold), model=dict(model or {}), source=source, astm=astm)

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
        from grainseg import __version__

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
                "G_planimetric": self.astm["planimetric"].get("G"),
                "G_planimetric_ci95": self.astm["planimetric"].get("G_ci95"),
                "G_intercept": self.astm["intercept"].get("G"),
                "G_intercept_ci95": self.astm["intercept"].get("G_ci95"),
                "planimetric": self.astm["planimetric"],
                "intercept": self.astm["intercept"],
            },
            "model": self.model,
            "grainseg_version": __version__,
        }
        if self.scale is None:
            out["astm_e112"]["note"] = NO_SCALE_NOTE
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
        """Write probability (16-bit PNG), mask (PNG, white = interior), overlay, labels (uint32 TIFF), CSV, JSON.

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
            "labels": tif(self.labels.astype(np.uint32)),
            "grains": table_to_csv(self.table).encode("utf-8"),
            "summary": (json.dumps(_jsonable(self.summary), indent=2) + "\n").encode("utf-8"),
        }
        for kind, path in paths.items():
            _write_bytes(path, blobs[kind], overwrite)
        return paths



def _write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write a file; ``overwrite`` False opens it exclusively, so an existing file is never replaced."""
    with open(path, "wb" if overwrite else "xb") as f:
        f.write(data)


def _jsonable(obj: Any) -> Any:
    """numpy scalars / arrays -> Python; non-finite floats -> None (JSON has no inf / NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
