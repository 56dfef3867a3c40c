"""How far to trust a predicted G: the model's own error, estimated on val, checked on test.

The 95 % interval the report gives for G (`G_*_ci95`) holds the field-to-field sampling spread of the
predicted grains only.  It says nothing of the model's error, which on held-out micrographs is as large
(docs/analysis.md: the default pulls every micrograph towards its training grain size).  This script
measures, per stitched `grouped` micrograph, G of the hand-drawn mask and of the prediction with its
sampling interval, then:
  - the model's root-mean-square dG on `val` (planimetric, intercept): what a model card records as
    `grain_size_validation` and the report adds to the sampling interval (in quadrature, x1.96);
  - on `test`, how many true G fall inside the sampling-only interval and inside the combined one;
  - the rms dG over val and test together (all 8 micrographs are held out of a `grouped`-trained
    model's training; no choice is made with it): the estimate a shipped model card records.

    python benchmarks/grain_size_uncertainty.py [--model M] [--out benchmarks/results/grain_size_uncertainty.json]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info, write_json  # noqa: E402

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))
METHODS = ("planimetric", "intercept", "intercept_direct_e112")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--out", default=str(HERE / "results" / "grain_size_uncertainty.json"))
    args = ap.parse_args()
    from grainseg.inference.predict import load_model
    from grainseg.inference.validate import collect_labelled, validate

    model, info = load_model(args.model)
    exone = SHARED / "data" / "exone316l"
    keys = ("image",) + tuple(f"{pre}_{m}{post}" for m in METHODS for pre, post in
                              (("G", "_true"), ("G", "_true_ci95"), ("G", "_pred"), ("G", "_pred_ci95"), ("dG", "")))
    val = validate(model, collect_labelled(exone, "grouped", "val"))
    rms = {m: val["summary"][f"rms_dG_{m}"] for m in METHODS}
    # test, read once, with the interval widened by the val error only
    test = validate(model, collect_labelled(exone, "grouped", "test"), model_error={"rms_dG": rms})
    rows = {"val": val["rows"], "test": test["rows"]}
    for sub, rs in rows.items():
        for r in rs:
            print(sub, r["image"], "  ".join(f"{m} true {r[f'G_{m}_true']:.3f} pred {r[f'G_{m}_pred']:.3f} "
                                            f"[{r[f'G_{m}_pred_ci95'][0]:.3f}, {r[f'G_{m}_pred_ci95'][1]:.3f}]"
                                            for m in METHODS), flush=True)
    pooled = {m: math.sqrt(float(np.mean([r[f"dG_{m}"] ** 2 for r in rows["val"] + rows["test"]]))) for m in METHODS}
    check = {}
    for m in METHODS:
        s = test["summary"]
        check[m] = {"test_inside_sampling_ci95": s[f"true_in_ci95_{m}"][0],
                    "test_inside_combined_ci95": s[f"true_in_ci95_with_model_error_{m}"][0],
                    "test_micrographs": len(rows["test"]), "test_rms_dG": s[f"rms_dG_{m}"]}
        print(f"{m:12s} val+test rms dG {pooled[m]:.3f}; val rms dG {rms[m]:.3f}; test: true G inside the sampling "
              f"interval {check[m]['test_inside_sampling_ci95']}/{check[m]['test_micrographs']}, inside the combined "
              f"one {check[m]['test_inside_combined_ci95']}/{check[m]['test_micrographs']} (test rms dG "
              f"{check[m]['test_rms_dG']:.3f})", flush=True)
    wide = tuple(f"G_{m}_pred_ci95_with_model_error" for m in METHODS)  # test only: widened by the val rms
    micrographs = {sub: [{k: r.get(k) for k in keys + (wide if sub == "test" else ())} for r in rs]
                   for sub, rs in rows.items()}
    write_json(Path(args.out), {"model": info, "machine": machine_info("cpu"), "val_rms_dG": rms,
                                "val_test_rms_dG": pooled, "test_check": check, "micrographs": micrographs}, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
