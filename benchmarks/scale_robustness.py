"""How the grain size of a model depends on the pixel size of the micrograph (magnification).

A lab's micrographs are rarely at the training set's magnification.  This resizes each stitched ExONE
micrograph by a set of factors (0.5 = half the pixels per grain, as at half the magnification), predicts
it, measures G with the pixel size scaled to match (so the true G does not change) and compares it with
the G of the hand-drawn mask at the original size.  A model that has learnt the grains, not their size
in pixels, gives the same dG at every factor.

    python benchmarks/scale_robustness.py [--model M] [--subset val] [--factors 0.5,0.7,1,1.4,2]
        [--rescale none,auto] [--data DIR --split S --subset val] [--keep 1.1 --tol 1.03 --passes 5]
        --out benchmarks/results/scale_robustness.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info, write_json  # noqa: E402  (CPU model, flags, torch, commit, date)

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """The micrograph at ``factor`` times its pixel count per side (Lanczos, as a camera at another
    magnification would see it, up to the optics)."""
    from PIL import Image

    if factor == 1:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--data", default=str(SHARED / "data" / "exone316l"))
    ap.add_argument("--split", default="grouped")
    ap.add_argument("--subset", default="val")
    ap.add_argument("--factors", default="0.5,0.7,1,1.4,2")
    ap.add_argument("--rescale", default="none,auto", help="comma-separated rescale modes of predict_proba")
    ap.add_argument("--keep", type=float, default=None, help="override RESCALE_KEEP (a variant to measure)")
    ap.add_argument("--tol", type=float, default=None, help="override RESCALE_TOL")
    ap.add_argument("--passes", type=int, default=None, help="override RESCALE_PASSES")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import grainseg.inference.rescale as rescale_module

    for name, value in (("RESCALE_KEEP", args.keep), ("RESCALE_TOL", args.tol), ("RESCALE_PASSES", args.passes)):
        if value is not None:
            setattr(rescale_module, name, value)

    from grainseg.grains.report import GrainReport
    from grainseg.grains.stats import label_interiors, tessellate_grains
    from grainseg.inference.predict import load_model, predict_proba_rescaled
    from grainseg.inference.validate import collect_labelled

    model, info = load_model(args.model)
    factors = [float(f) for f in args.factors.split(",")]
    modes = args.rescale.split(",")
    items = collect_labelled(args.data, args.split, args.subset)
    record = {"machine": machine_info("cpu"), "model": info, "data": args.data, "split": args.split,
              "subset": args.subset, "factors": factors, "rows": [],
              "search": {k: getattr(rescale_module, k) for k in ("RESCALE_KEEP", "RESCALE_TOL", "RESCALE_PASSES")}}
    for item in items:
        image, mask = item.load()
        t_labels = label_interiors(mask > 0, min_area=10)
        truth = GrainReport.from_grains(image, mask.astype(np.float32), mask > 0, t_labels,
                                        tessellate_grains(t_labels), scale=1.0)
        g_true = {k: truth.astm[k]["G"] for k in ("planimetric", "intercept")}
        for f in factors:
            img = resize(image, f)
            for mode in modes:
                t0 = time.perf_counter()
                prob, used = predict_proba_rescaled(model, img, rescale=None if mode == "none" else mode)
                seconds = time.perf_counter() - t0
                pred = GrainReport.from_probability(img, prob, scale=1.0 / f)
                row = {"image": item.name, "factor": f, "rescale": mode, "seconds": seconds,
                       "rescale_used": used, "grains_true": truth.grain_count, "grains_pred": pred.grain_count}
                for k in ("planimetric", "intercept"):
                    g = pred.astm.get(k, {}).get("G")
                    row[f"G_{k}_true"], row[f"G_{k}_pred"] = g_true[k], g
                    row[f"dG_{k}"] = None if g is None or g_true[k] is None else g - g_true[k]
                record["rows"].append(row)
                g = "" if used is None else f" x{used['factor']:.3f} in {len(used.get('passes', [1]))} passes"
                print(f"{item.name} x{f:g} {mode:5s}{g}: grains {row['grains_pred']}/{row['grains_true']} "
                      f"dG plan {row['dG_planimetric']:+.3f} int {row['dG_intercept']:+.3f} ({seconds:.1f} s)",
                      flush=True)
                write_json(Path(args.out), record, indent=2)
    summary = {}
    for f in factors:
        for mode in modes:
            rows = [r for r in record["rows"] if r["factor"] == f and r["rescale"] == mode]
            summary[f"x{f:g}/{mode}"] = {
                f"mean_abs_dG_{k}": float(np.mean([abs(r[f"dG_{k}"]) for r in rows])) for k in ("planimetric", "intercept")
            } | {f"bias_dG_{k}": float(np.mean([r[f"dG_{k}"] for r in rows])) for k in ("planimetric", "intercept")}
            s = summary[f"x{f:g}/{mode}"]
            print(f"x{f:g} {mode:5s}: |dG| plan {s['mean_abs_dG_planimetric']:.3f} ({s['bias_dG_planimetric']:+.3f}) "
                  f"int {s['mean_abs_dG_intercept']:.3f} ({s['bias_dG_intercept']:+.3f})")
    record["summary"] = summary
    write_json(Path(args.out), record, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
