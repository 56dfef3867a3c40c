"""How much of the direct E112 count's |dG| on predictions comes from boundaries the model half saw?

    python benchmarks/direct_count_gaps.py [--model M] [--subsets val,test] [--links 0.5,0.6,0.7,0.8,0.9,0.95]
        [--out benchmarks/results/direct_count_gaps.json]

For the ExONE `grouped` val and test micrographs (tiles stitched back), each against the direct count of
the hand-drawn mask: the direct count of the predicted boundary mask (probability <= 0.5); the same
count on the mask plus the watershed lines between the predicted grains (the boundaries the instance
step closes); and on the mask linked by hysteresis to the regions of probability < P that touch it
(`grainseg.grains.intercepts.linked_boundary`, one column per P of --links; P = 0.5 is the mask alone).
Choose P on val only.  See docs/analysis.md ("Which count G uses").
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from grain_size_validation import SHARED
from grainseg.grains.intercepts import e112_pattern, intercept_from_counts, linked_boundary, pattern_intercepts
from grainseg.inference import load_model
from grainseg.inference.validate import collect_labelled, validate

HERE = Path(__file__).resolve().parent


def direct_g(boundary: np.ndarray) -> float:
    paths = e112_pattern(boundary.shape)
    counts = pattern_intercepts(paths, boundary=boundary)
    return intercept_from_counts(counts["direct"], counts["lengths_px"], 1.0)["G"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--subsets", default="val,test")
    ap.add_argument("--links", default="0.5,0.6,0.7,0.8,0.9,0.95", help="hysteresis levels P to compare")
    ap.add_argument("--out", default=str(HERE / "results" / "direct_count_gaps.json"))
    args = ap.parse_args()
    links = [float(v) for v in args.links.split(",")]
    torch.set_num_threads(1)
    model = load_model(args.model)[0]
    out = {"model": args.model or "embedded default", "images": [], "summary": {}}
    for subset in args.subsets.split(","):
        items = collect_labelled(SHARED / "data" / "exone316l", split="grouped", subset=subset)
        res = validate(model, items, keep_maps=True)
        d_mask, d_lines, d_link = [], [], {p: [] for p in links}
        for row, m in zip(res["rows"], res["maps"]):
            g = m["pred"]
            lines = np.zeros(g.shape, bool)
            lines[:, 1:] |= g[:, 1:] != g[:, :-1]
            lines[1:, :] |= g[1:, :] != g[:-1, :]
            mask_b = m["prob"] <= 0.5
            g_true = row["G_intercept_direct_e112_true"]
            rec = {"subset": subset, "image": row["image"], "G_direct_true": g_true,
                   "G_direct_pred_mask": direct_g(mask_b), "G_direct_pred_mask_and_lines": direct_g(mask_b | lines),
                   "G_heyn_true": row["G_intercept_true"], "G_heyn_pred": row["G_intercept_pred"]}
            for p in links:
                rec[f"G_direct_pred_linked_{p:g}"] = direct_g(linked_boundary(m["prob"], 0.5, p))
                d_link[p].append(rec[f"G_direct_pred_linked_{p:g}"] - g_true)
            d_mask.append(rec["G_direct_pred_mask"] - g_true)
            d_lines.append(rec["G_direct_pred_mask_and_lines"] - g_true)
            out["images"].append(rec)
            print(json.dumps(rec))
        out["summary"][subset] = {"mean_abs_dG_direct_mask": float(np.mean(np.abs(d_mask))),
                                  "mean_abs_dG_direct_mask_and_lines": float(np.mean(np.abs(d_lines))),
                                  "bias_dG_direct_mask": float(np.mean(d_mask)),
                                  "bias_dG_direct_mask_and_lines": float(np.mean(d_lines)),
                                  **{f"mean_abs_dG_direct_linked_{p:g}": float(np.mean(np.abs(d_link[p]))) for p in links},
                                  **{f"bias_dG_direct_linked_{p:g}": float(np.mean(d_link[p])) for p in links}}
        print(subset, out["summary"][subset])
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("->", args.out)


if __name__ == "__main__":
    main()
