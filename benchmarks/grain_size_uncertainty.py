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
METHODS = ("planimetric", "intercept")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--out", default=str(HERE / "results" / "grain_size_uncertainty.json"))
    args = ap.parse_args()
    from grainseg.grains.astm import combined_interval
    from grainseg.grains.report import GrainReport
    from grainseg.grains.stats import label_interiors, tessellate_grains
    from grainseg.inference.predict import load_model, predict_for_grains
    from grainseg.inference.validate import collect_labelled

    model, info = load_model(args.model)
    exone = SHARED / "data" / "exone316l"
    rows = {}
    for sub in ("val", "test"):
        rows[sub] = []
        for item in collect_labelled(exone, "grouped", sub):
            image, mask = item.load("grain", 127)
            prob, _, _ = predict_for_grains(model, image, {}, "auto")
            pred = GrainReport.from_probability(image, prob, scale=1.0)
            t_labels = label_interiors(mask > 0, min_area=10)
            truth = GrainReport.from_grains(image, mask.astype(np.float32), mask > 0, t_labels,
                                            tessellate_grains(t_labels), scale=1.0)
            row = {"image": item.name}
            for m in METHODS:
                row[m] = {"G_true": truth.astm[m]["G"], "G_true_ci95": truth.astm[m]["G_ci95"],
                          "G_pred": pred.astm[m]["G"], "G_pred_ci95": pred.astm[m]["G_ci95"],
                          "dG": pred.astm[m]["G"] - truth.astm[m]["G"]}
            rows[sub].append(row)
            print(sub, item.name, "  ".join(f"{m} true {row[m]['G_true']:.3f} pred {row[m]['G_pred']:.3f} "
                                            f"[{row[m]['G_pred_ci95'][0]:.3f}, {row[m]['G_pred_ci95'][1]:.3f}]"
                                            for m in METHODS), flush=True)
    rms = {m: math.sqrt(float(np.mean([r[m]["dG"] ** 2 for r in rows["val"]]))) for m in METHODS}
    check = {}
    for m in METHODS:
        inside_sampling = inside_combined = 0
        for r in rows["test"]:
            g, ci, gt = r[m]["G_pred"], r[m]["G_pred_ci95"], r[m]["G_true"]
            lo, hi = combined_interval(g, ci, rms[m])
            r[m]["G_pred_ci95_with_model_error"] = [lo, hi]
            inside_sampling += int(ci[0] <= gt <= ci[1])
            inside_combined += int(lo <= gt <= hi)
        check[m] = {"test_inside_sampling_ci95": inside_sampling, "test_inside_combined_ci95": inside_combined,
                    "test_micrographs": len(rows["test"]),
                    "test_rms_dG": math.sqrt(float(np.mean([r[m]["dG"] ** 2 for r in rows["test"]])))}
    pooled = {m: math.sqrt(float(np.mean([r[m]["dG"] ** 2 for r in rows["val"] + rows["test"]]))) for m in METHODS}
    for m in METHODS:
        print(f"{m:12s} val+test rms dG {pooled[m]:.3f}; val rms dG {rms[m]:.3f}; test: true G inside the sampling interval "
              f"{check[m]['test_inside_sampling_ci95']}/{check[m]['test_micrographs']}, inside the combined one "
              f"{check[m]['test_inside_combined_ci95']}/{check[m]['test_micrographs']} (test rms dG "
              f"{check[m]['test_rms_dG']:.3f})", flush=True)
    write_json(Path(args.out), {"model": info, "machine": machine_info("cpu"), "val_rms_dG": rms, "val_test_rms_dG": pooled,
                                "test_check": check, "micrographs": rows}, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
