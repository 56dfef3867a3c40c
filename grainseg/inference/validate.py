"""Validate a model's grain measurement against hand-drawn masks: ``grainseg validate``.

For every labelled image (or whole micrograph stitched back from its tiles) this measures what a
materials lab cares about, the grain size, beside the pixel metrics:

- Dice and boundary F1 of the interior mask (per image, as the training metrics);
- adapted Rand error and variation of information (split / merge) of the grain tessellations, the
  grain-level metrics of the grain-boundary literature (WPU-Net, MPU-Net);
- true and predicted grain counts, ASTM E112 G planimetric and intercept (the same procedures on the
  truth, whose grains are the connected interiors of the hand-drawn mask, and on the prediction) and
  dG = G_pred - G_true for each; the direct E112-pattern count too.

G differences do not depend on the scale (it cancels), so a scale is optional.  Tiles named
``<stem>_<row>_<col>`` that form a complete grid of equal tiles are stitched into one micrograph
(``stitch="auto"``): G needs a field much larger than a grain, and tiles cut grains.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from grainseg.grains.astm import MODEL_ERROR_METHODS, intervals_with_model_error, model_error_rms

from .rescale import DEFAULT_RESCALE

__all__ = ["LabelledImage", "card_record", "collect_labelled", "validate", "write_outputs", "format_validation"]

_TILE = re.compile(r"^(?P<stem>.+?)_(?P<r>\d+)_(?P<c>\d+)$")


@dataclass
class LabelledImage:
    """One image to validate: a file pair, or tiles stitched into a grid (``tiles[r][c]``)."""

    name: str
    tiles: List[List[Tuple[Path, Path]]]

    def load(self, polarity: str = "grain", threshold: float = 127) -> Tuple[np.ndarray, np.ndarray]:
        """(image, {0,1} grain-interior mask), stitched when there are several tiles."""
        from grainseg.data.io import read_image, read_mask

        rows_i, rows_m = [], []
        for row in self.tiles:
            imgs = [read_image(p) for p, _ in row]
            masks = [read_mask(m, threshold=threshold, polarity=polarity) for _, m in row]
            for (p, m), a, b in zip(row, imgs, masks):
                if a.shape[:2] != b.shape:
                    raise ValueError(f"mask {m} is {b.shape[1]}x{b.shape[0]} but its image {p} is {a.shape[1]}x{a.shape[0]}")
            if len({a.shape for a in imgs}) != 1:
                raise ValueError(f"tiles of {self.name} differ in size or channels; pass --stitch never")
            rows_i.append(np.concatenate(imgs, axis=1))
            rows_m.append(np.concatenate(masks, axis=1))
        return np.concatenate(rows_i, axis=0), np.concatenate(rows_m, axis=0)


def _stitchable(pairs: Dict[str, Tuple[Path, Path]]) -> Tuple[List[LabelledImage], List[str]]:
    groups: Dict[str, Dict[Tuple[int, int], Tuple[Path, Path]]] = {}
    loose: List[str] = []
    for name, pair in pairs.items():
        m = _TILE.match(Path(name).stem)
        if m is None:
            loose.append(name)
            continue
        groups.setdefault(m["stem"], {})[(int(m["r"]), int(m["c"]))] = pair
    out: List[LabelledImage] = []
    for stem, cells in sorted(groups.items()):
        rs, cs = sorted({r for r, _ in cells}), sorted({c for _, c in cells})
        complete = len(cells) == len(rs) * len(cs) > 1 and rs == list(range(rs[0], rs[0] + len(rs))) \
            and cs == list(range(cs[0], cs[0] + len(cs)))
        if complete:
            out.append(LabelledImage(stem, [[cells[(r, c)] for c in cs] for r in rs]))
        else:
            loose.extend(Path(p).name for p, _ in cells.values())
    return out, loose


def collect_labelled(data: Union[str, Path], split: Optional[str] = None, subset: str = "test",
                     layout: str = "auto", splits_file: Optional[Union[str, Path]] = None,
                     stitch: str = "auto") -> List[LabelledImage]:
    """The images of ``data`` (ExONE ``RG``/``RGMask`` or ``images``/``masks``) in ``split``/``subset``.

    ``split`` None: every image.  ``stitch``: ``"auto"`` (complete tile grids become one micrograph)
    or ``"never"``.
    """
    from grainseg.data.datasets import SUBSETS, find_pairs, load_splits

    if stitch not in ("auto", "never"):
        raise ValueError(f"stitch must be 'auto' or 'never', got {stitch!r}")
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a folder (expected RG/ + RGMask/ or images/ + masks/)")
    pairs = find_pairs(root, layout)
    if split:
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
        splits = load_splits(splits_file or root / "splits.json")
        if split not in splits:
            raise ValueError(f"split {split!r} is not in the splits file; it has {', '.join(sorted(splits))}")
        names = splits[split].get(subset, [])
        missing = [n for n in names if n not in pairs]
        if missing:
            raise ValueError(f"split {split}/{subset} names {missing[0]}, which is not in {root} ({len(missing)} missing)")
        pairs = {n: pairs[n] for n in names}
    if not pairs:
        raise ValueError(f"no images to validate in {root} (split {split}, subset {subset})")
    if stitch == "never":
        return [LabelledImage(Path(n).stem, [[p]]) for n, p in sorted(pairs.items())]
    grids, loose = _stitchable(pairs)
    return grids + [LabelledImage(Path(n).stem, [[pairs[n]]]) for n in sorted(loose)]


def _delta(pred: Optional[float], true: Optional[float]) -> Optional[float]:
    return None if pred is None or true is None else float(pred - true)


def validate(model, items: Sequence[LabelledImage], *, scale: Optional[float] = None, polarity: str = "grain",
             mask_threshold: float = 127, grain_kw: Optional[Dict[str, Any]] = None, tolerance: float = 2.0,
             overlap: float = 0.25, batch_size: int = 4, device=None, progress=None,
             keep_maps: bool = False, tta: Union[bool, str, None] = None,
             rescale: Union[None, str, float] = DEFAULT_RESCALE,
             model_error: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Per-image rows and a summary (see the module docstring).  ``scale`` (um/px) only labels G.

    ``progress``: a callable given one line per finished image.  ``keep_maps``: also return, per image,
    the arrays the PNG panel needs (image, truth, prediction, probability).  ``tta``, ``rescale``: as for
    :func:`~grainseg.inference.analyze` (each row records the rescale factor used).  ``model_error``: a
    model card's ``grain_size_validation`` (default: the model's own, when it was loaded from a card that
    has one); each row then also says whether the true G lies in the predicted 95 % interval widened by
    it, as it does for the sampling interval alone.
    """
    from skimage.metrics import adapted_rand_error, variation_of_information

    from grainseg.grains.report import GrainReport
    from grainseg.grains.stats import label_interiors, tessellate_grains
    from grainseg.train.metrics import boundary_f1, dice_score

    from .predict import predict_for_grains

    if model_error is None:
        model_error = getattr(model, "grain_size_validation", None)
    rms_by_method = {} if model_error is None else model_error_rms(model_error, where="model_error")
    kw = dict(grain_kw or {})
    g_scale = 1.0 if scale is None else float(scale)
    rows, maps = [], []
    instances: Dict[str, Any] = {}
    for item in items:
        image, mask = item.load(polarity, mask_threshold)
        prob, used, notes = predict_for_grains(model, image, {}, rescale, overlap=overlap, batch_size=batch_size,
                                               device=device, tta=tta)
        pred = GrainReport.from_probability(image, prob, scale=g_scale, **kw)
        pred.warnings.extend(notes)
        instances = pred.instances
        t_labels = label_interiors(mask > 0, min_area=int(kw.get("min_grain_area", 10)))
        t_grains = tessellate_grains(t_labels)
        truth = GrainReport.from_grains(image, mask.astype(np.float32), mask > 0, t_labels, t_grains, scale=g_scale)
        warnings = [f"truth: {w}" for w in truth.warnings] + [f"prediction: {w}" for w in pred.warnings]
        row: Dict[str, Any] = {
            "image": item.name, "tiles": sum(len(r) for r in item.tiles),
            "height": int(mask.shape[0]), "width": int(mask.shape[1]),
            "dice": dice_score(prob, mask), "boundary_f1": boundary_f1(prob, mask, tolerance),
            "grains_true": truth.grain_count, "grains_pred": pred.grain_count,
            "rescale": (used.get("rescale") or {}).get("factor", 1.0),
        }
        if t_grains.any() and pred.grains.any():
            are, prec, rec = adapted_rand_error(t_grains, pred.grains)
            split_vi, merge_vi = variation_of_information(t_grains, pred.grains)
            row.update(adapted_rand_error=float(are), rand_precision=float(prec), rand_recall=float(rec),
                       vi_split=float(split_vi), vi_merge=float(merge_vi), vi=float(split_vi + merge_vi))
        else:
            warnings.append("no grains on one side: grain-level metrics not computed")
        wide = intervals_with_model_error(pred.astm, rms_by_method)
        for key, src in MODEL_ERROR_METHODS.items():
            gt, gp = truth.astm.get(src, {}).get("G"), pred.astm.get(src, {}).get("G")
            row[f"G_{key}_true"], row[f"G_{key}_pred"], row[f"dG_{key}"] = gt, gp, _delta(gp, gt)
            ci = pred.astm.get(src, {}).get("G_ci95")
            row[f"G_{key}_pred_ci95"], row[f"G_{key}_true_in_ci95"] = ci, _inside(gt, ci)
            row[f"G_{key}_true_ci95"] = truth.astm.get(src, {}).get("G_ci95")
            if key in wide:
                row[f"G_{key}_pred_ci95_with_model_error"] = wide[key]
                row[f"G_{key}_true_in_ci95_with_model_error"] = _inside(gt, wide[key])
        row["warnings"] = warnings
        rows.append(row)
        if keep_maps:
            maps.append({"image": image, "truth": t_grains, "pred": pred.grains, "mask": mask, "prob": prob})
        if progress is not None:
            progress(f"{item.name}: Dice {row['dice']:.4f}, grains {row['grains_pred']} / {row['grains_true']}, "
                     f"dG planimetric {_fmt(row['dG_planimetric'])}, intercept {_fmt(row['dG_intercept'])}")
    return {"rows": rows, "summary": _summary(rows), "maps": maps if keep_maps else None,
            "instances": instances, "scale_um_per_px": scale}


def _summary(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"n_images": len(rows)}
    for k in ("dice", "boundary_f1", "adapted_rand_error", "vi_split", "vi_merge", "vi"):
        vals = [r[k] for r in rows if r.get(k) is not None and not math.isnan(r[k])]
        out[f"mean_{k}"] = float(np.mean(vals)) if vals else None
    for key in MODEL_ERROR_METHODS:
        d = [r[f"dG_{key}"] for r in rows if r.get(f"dG_{key}") is not None]
        out[f"mean_abs_dG_{key}"] = float(np.mean(np.abs(d))) if d else None
        out[f"bias_dG_{key}"] = float(np.mean(d)) if d else None
        out[f"rms_dG_{key}"] = float(np.sqrt(np.mean(np.square(d)))) if d else None
        out[f"n_dG_{key}"] = len(d)
    for key in MODEL_ERROR_METHODS:
        for kind in ("ci95", "ci95_with_model_error"):
            flags = [r[f"G_{key}_true_in_{kind}"] for r in rows if r.get(f"G_{key}_true_in_{kind}") is not None]
            out[f"true_in_{kind}_{key}"] = [sum(flags), len(flags)] if flags else None
    t, p = sum(r["grains_true"] for r in rows), sum(r["grains_pred"] for r in rows)
    out.update(grains_true=t, grains_pred=p, grain_count_ratio=(p / t) if t else None)
    return out


def card_record(summary: Dict[str, Any], data: str) -> Optional[Dict[str, Any]]:
    """A ``grain_size_validation`` record for a model card (config.json) from a validation summary, or
    None when G was not measured on both sides.  Record it only for images held out of the model's
    training *and* of its selection: the report widens every G interval by it.  The direct E112 count's
    error is included where it was measured."""
    rms = {k: summary.get(f"rms_dG_{k}") for k in ("planimetric", "intercept")}
    if any(v is None for v in rms.values()):
        return None
    if summary.get("rms_dG_intercept_direct_e112") is not None:
        rms["intercept_direct_e112"] = summary["rms_dG_intercept_direct_e112"]
    return {"data": data, "micrographs": min(summary.get("n_dG_planimetric", 0), summary.get("n_dG_intercept", 0)),
            "rms_dG": {k: round(v, 4) for k, v in rms.items()},
            "mean_abs_dG": {k: round(summary[f"mean_abs_dG_{k}"], 4) for k in rms},
            "bias_dG": {k: round(summary[f"bias_dG_{k}"], 4) for k in rms}}


def _inside(g: Optional[float], interval: Optional[Sequence[Optional[float]]]) -> Optional[bool]:
    """Whether g lies in [lo, hi]; None when either is unknown."""
    if g is None or not interval or interval[0] is None or interval[1] is None:
        return None
    return bool(interval[0] <= g <= interval[1])


def _fmt(v: Optional[float], spec: str = "+.3f") -> str:
    return "n/a" if v is None else format(v, spec)


COLUMNS = ("image", "tiles", "height", "width", "dice", "boundary_f1", "adapted_rand_error", "vi_split", "vi_merge",
           "grains_true", "grains_pred", "rescale", "G_planimetric_true", "G_planimetric_pred", "dG_planimetric",
           "G_intercept_true", "G_intercept_pred", "dG_intercept", "G_intercept_direct_e112_true",
           "G_intercept_direct_e112_pred", "dG_intercept_direct_e112", "G_planimetric_true_in_ci95",
           "G_planimetric_true_in_ci95_with_model_error", "G_intercept_true_in_ci95",
           "G_intercept_true_in_ci95_with_model_error", "G_intercept_direct_e112_true_in_ci95",
           "G_intercept_direct_e112_true_in_ci95_with_model_error")


def to_csv(rows: List[Dict[str, Any]]) -> str:
    """One CSV line per image (the columns of :data:`COLUMNS`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in COLUMNS])
    return buf.getvalue()


def format_validation(result: Dict[str, Any]) -> str:
    """A plain-text table: per image, then the summary."""
    head = (f"{'image':<14} {'Dice':>7} {'BF1':>6} {'ARE':>6} {'grains p/t':>11} {'dG plan':>8} {'dG int':>8} "
            f"{'dG dir':>8}")
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{r['image']:<14} {r['dice']:7.4f} {r['boundary_f1']:6.3f} "
                     f"{_fmt(r.get('adapted_rand_error'), '6.3f'):>6} {r['grains_pred']:>5}/{r['grains_true']:<5} "
                     f"{_fmt(r['dG_planimetric']):>8} {_fmt(r['dG_intercept']):>8} "
                     f"{_fmt(r.get('dG_intercept_direct_e112')):>8}"
                     + ("" if r.get("rescale", 1.0) == 1.0 else f"  (fed at x{r['rescale']:.2f})"))
    s = result["summary"]
    lines.append("-" * len(head))
    lines.append(f"mean over {s['n_images']} images: Dice {_fmt(s['mean_dice'], '.4f')}, boundary F1 "
                 f"{_fmt(s['mean_boundary_f1'], '.3f')}, adapted Rand error {_fmt(s['mean_adapted_rand_error'], '.3f')}")
    lines.append(f"mean |dG| planimetric {_fmt(s['mean_abs_dG_planimetric'], '.3f')} (bias "
                 f"{_fmt(s['bias_dG_planimetric'])}), intercept {_fmt(s['mean_abs_dG_intercept'], '.3f')} (bias "
                 f"{_fmt(s['bias_dG_intercept'])}), direct E112 count {_fmt(s['mean_abs_dG_intercept_direct_e112'], '.3f')} "
                 f"(bias {_fmt(s['bias_dG_intercept_direct_e112'])}); grains predicted / true {s['grains_pred']} / "
                 f"{s['grains_true']}")
    cover = []
    for key in MODEL_ERROR_METHODS:
        base, wide = s.get(f"true_in_ci95_{key}"), s.get(f"true_in_ci95_with_model_error_{key}")
        if base:
            cover.append(f"{key} {base[0]}/{base[1]}" + (f" (with the model's error {wide[0]}/{wide[1]})" if wide else ""))
    if cover:
        lines.append("true G inside the predicted 95 % interval: " + ", ".join(cover))
    return "\n".join(lines)


def _panel(m: Dict[str, np.ndarray], width: int = 480) -> np.ndarray:
    """image | truth grains | predicted grains | error map (green: missed boundary, magenta: extra)."""
    from skimage.segmentation import find_boundaries

    from grainseg.grains.report import _as_rgb_uint8

    img = _as_rgb_uint8(m["image"])
    tb = find_boundaries(m["truth"], mode="inner")
    pb = find_boundaries(m["pred"], mode="inner")

    def draw(bound: np.ndarray, color) -> np.ndarray:
        out = img.copy()
        out[bound] = color
        return out

    from scipy.ndimage import binary_dilation

    err = np.full(img.shape, 255, np.uint8)
    tbd, pbd = binary_dilation(tb, iterations=2), binary_dilation(pb, iterations=2)
    err[tb & ~pbd] = (0, 170, 0)
    err[pb & ~tbd] = (220, 0, 220)
    err[tb & pbd] = (150, 150, 150)
    tiles = [img, draw(tb, (0, 200, 0)), draw(pb, (255, 40, 40)), err]
    from PIL import Image

    h = max(1, round(img.shape[0] * width / img.shape[1]))
    small = [np.asarray(Image.fromarray(t).resize((width, h), Image.BILINEAR)) for t in tiles]
    gap = np.full((h, 6, 3), 255, np.uint8)
    return np.concatenate(sum(([s, gap] for s in small), [])[:-1], axis=1)


def write_outputs(result: Dict[str, Any], out: Union[str, Path], overwrite: bool = False,
                  meta: Optional[Dict[str, Any]] = None) -> Dict[str, Path]:
    """validation.json, validation.csv and one ``<image>_panel.png`` per image (never replacing files
    unless ``overwrite``)."""
    import json

    from PIL import Image

    from grainseg._json import dumps
    from grainseg.grains.report import _write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "validation.json", "csv": out / "validation.csv"}
    maps = result.get("maps") or []
    for r in result["rows"][:len(maps)]:
        paths[f"panel:{r['image']}"] = out / f"{r['image']}_panel.png"
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists ({len(existing)} file(s)); pass --overwrite to replace")
    record = {**(meta or {}), "summary": result["summary"], "images": result["rows"],
              "instances": result.get("instances"), "scale_um_per_px": result.get("scale_um_per_px")}
    _write_bytes(paths["json"], (dumps(record) + "\n").encode(), overwrite)
    _write_bytes(paths["csv"], to_csv(result["rows"]).encode(), overwrite)
    for r, m in zip(result["rows"], maps):
        buf = io.BytesIO()
        Image.fromarray(_panel(m)).save(buf, format="PNG")
        _write_bytes(paths[f"panel:{r['image']}"], buf.getvalue(), overwrite)
    return paths
