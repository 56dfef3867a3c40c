"""Multi-scale test-time averaging as a grain-size lever, measured on stitched `grouped` micrographs.

The default model pulls every micrograph's grain size towards its training mean (docs/analysis.md:
predicted G follows drawn G with slope 0.22 planimetric). Averaging the probability maps of the image
fed at several scales might weaken that prior: a boundary the model invents to make a large grain
"typical" sits in a different place at each scale and averages down, while a real one is found at all.
This wraps `predict_for_grains` so that `validate` sees the averaged map, and reports mean |dG|.

    python benchmarks/multiscale_lever.py --factors 0.8,1,1.25 [--model M] [--subsets val] [--out X.json]
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
from bench_scan import machine_info, write_json  # noqa: E402
from grain_size_validation import summary_text  # noqa: E402

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--factors", default="0.8,1,1.25", help="comma-separated scale factors whose maps are averaged")
    ap.add_argument("--mean", default="arith", choices=("arith", "geo"), help="average of probabilities or of logits")
    ap.add_argument("--subsets", default="val")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import grainseg.inference.predict as P
    from grainseg.inference.validate import collect_labelled, validate

    factors = [float(f) for f in args.factors.split(",")]
    model, info = P.load_model(args.model)

    def averaged(model, image, info_, rescale, **kw):
        probs = [P.predict_proba(model, image, rescale=f, overlap=kw.get("overlap", 0.25),
                                 batch_size=kw.get("batch_size", 4), device=kw.get("device"), tta=kw.get("tta"))
                 for f in factors]
        if args.mean == "geo":
            eps = 1e-6
            z = np.mean([np.log(np.clip(p, eps, 1 - eps) / np.clip(1 - p, eps, 1 - eps)) for p in probs], axis=0)
            prob = (1 / (1 + np.exp(-z))).astype(np.float32)
        else:
            prob = np.mean(probs, axis=0).astype(np.float32)
        return prob, {"rescale": {"factor": 1.0, "factors": factors}}, []

    P.predict_for_grains = averaged
    record = {"model": info, "machine": machine_info("cpu"), "factors": factors, "mean": args.mean, "results": {}}
    exone = SHARED / "data" / "exone316l"
    for sub in args.subsets.split(","):
        t = time.perf_counter()
        res = validate(model, collect_labelled(exone, "grouped", sub), grain_kw={"method": "watershed"})
        s = res["summary"]
        record["results"][f"exone_grouped_{sub}/watershed"] = {
            "summary": s, "seconds": round(time.perf_counter() - t, 1),
            "images": [{k: r.get(k) for k in ("image", "dice", "boundary_f1", "grains_true", "grains_pred",
                                              "G_planimetric_true", "G_intercept_true", "dG_planimetric",
                                              "dG_intercept")} for r in res["rows"]]}
        print(f"{sub:5s} factors {args.factors} ({args.mean}) Dice {s['mean_dice']:.4f} BF1 {s['mean_boundary_f1']:.3f} "
              f"{summary_text(s)}", flush=True)
        for r in res["rows"]:
            print(f"   {r['image']:10s} grains {r['grains_pred']}/{r['grains_true']} dG plan {r['dG_planimetric']:+.3f} "
                  f"int {r['dG_intercept']:+.3f}", flush=True)
    if args.out:
        write_json(Path(args.out), record, indent=2)


if __name__ == "__main__":
    main()
