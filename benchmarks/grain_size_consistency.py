"""Is a micrograph's grain-size error the model's or the micrograph's?  dG of every trained model, per micrograph.

    python benchmarks/grain_size_consistency.py [--out benchmarks/results/grain_size_consistency.json]

Reads the per-micrograph dG (watershed instances, the package defaults) that the lever and validation
runs recorded for the 4 stitched ExONE `grouped` val micrographs, one row per model, and reports per
micrograph the mean dG over the models and its standard deviation between models.  A small
between-model spread beside large per-micrograph means says the remaining error is shared by every
model: a property of the micrograph and its hand-drawn mask, which no lever of one model removes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import write_json  # noqa: E402

RESULTS = HERE / "results"
#: model -> (results JSON, key of its grouped-val watershed entry; None: the file's first val entry)
RUNS = {
    "vmunet_aspp_small, 0.2 default (seed 0)": ("grain_size_vmunet_aspp_small_grouped.json", "exone_grouped_val/watershed"),
    "vmunet_aspp_small, default recipe seed 1": ("seed1_default_val.json", None),
    "vmunet_aspp_small, DiceCE": ("lever_dicece_val.json", None),
    "vmunet_aspp_small, synthetic pre-training": ("lever_synpre_val.json", None),
    "vmunet_aspp_small, synthetic + boundary BCE": ("lever_boundary_val.json", None),
    "vmunet_aspp_small, native 400 px (seed 0)": ("lever_native400_val.json", None),
    "vmunet_aspp_small, native 400 px seed 1": ("lever_native400_seed1_val.json", None),
    "vmunet_aspp (35.8 M), paper protocol on grouped": ("grain_size_vmunet_aspp_grouped.json", "exone_grouped_val/watershed"),
    "vmunet_aspp_small, 45 epochs": ("lever_ep45_val.json", None),
    "vmunet small without ASPP (ablation)": ("ablation_noaspp_small.json", None),
    "unet_small (a CNN, 3.0 M), seed 0": ("unet_small_grouped_val.json", None),
    "unet_small, seed 1": ("unet_small_grouped_seed1_val.json", None),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(RESULTS / "grain_size_consistency.json"))
    args = ap.parse_args()
    per_model = {}
    for model, (name, key) in RUNS.items():
        results = json.loads((RESULTS / name).read_text())["results"]
        key = key or next(k for k in results if k.startswith("val"))
        per_model[model] = {r["image"]: {"planimetric": r["dG_planimetric"], "intercept": r["dG_intercept"]}
                            for r in results[key]["images"]}
    images = sorted(next(iter(per_model.values())))
    record = {"micrographs": images, "models": per_model, "summary": {}}
    for method in ("planimetric", "intercept"):
        m = np.array([[per_model[k][i][method] for i in images] for k in per_model])  # models x micrographs
        s = {"mean_dG_per_micrograph": dict(zip(images, m.mean(0).tolist())),
             "between_model_sd_per_micrograph": dict(zip(images, m.std(0, ddof=1).tolist())),
             "mean_between_model_sd": float(m.std(0, ddof=1).mean()),
             "between_micrograph_sd_of_means": float(m.mean(0).std(ddof=1)),
             "mean_abs_of_micrograph_means": float(np.abs(m.mean(0)).mean())}
        record["summary"][method] = s
        print(f"{method:12s} " + "  ".join(f"{i} {s['mean_dG_per_micrograph'][i]:+.3f} (sd {s['between_model_sd_per_micrograph'][i]:.3f})"
                                          for i in images)
              + f" | between models {s['mean_between_model_sd']:.3f}, between micrographs {s['between_micrograph_sd_of_means']:.3f}")
    write_json(Path(args.out), record, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
