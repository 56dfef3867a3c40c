"""How much of the direct E112 count's |dG| on predictions comes from boundaries the watershed closes?

    python benchmarks/direct_count_gaps.py [--model M] [--out benchmarks/results/direct_count_gaps.json]

For the ExONE `grouped` val and test micrographs (tiles stitched back): the direct count of the predicted
boundary mask (probability <= 0.5, what `grainseg predict` reports) against the same count on the mask
plus the watershed lines between the predicted grains (the boundaries the instance step closes), each
against the direct count of the hand-drawn mask.  See docs/analysis.md ("Which count G uses").
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from grain_size_validation import SHARED
from grainseg.grains.intercepts import e112_pattern, intercept_from_counts, pattern_intercepts
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
    ap.add_argument("--out", default=str(HERE / "results" / "direct_count_gaps.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)[0]
    out = {"model": args.model or "embedded default", "images": [], "summary": {}}
    for subset in ("val", "test"):
        items = collect_labelled(SHARED / "data" / "exone316l", split="grouped", subset=subset)
        res = validate(model, items, keep_maps=True)
        d_mask, d_lines = [], []
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
            d_mask.append(rec["G_direct_pred_mask"] - g_true)
            d_lines.append(rec["G_direct_pred_mask_and_lines"] - g_true)
            out["images"].append(rec)
            print(json.dumps(rec))
        out["summary"][subset] = {"mean_abs_dG_direct_mask": float(np.mean(np.abs(d_mask))),
                                  "mean_abs_dG_direct_mask_and_lines": float(np.mean(np.abs(d_lines))),
                                  "bias_dG_direct_mask": float(np.mean(d_mask)),
                                  "bias_dG_direct_mask_and_lines": float(np.mean(d_lines))}
        print(subset, out["summary"][subset])
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("->", args.out)


if __name__ == "__main__":
    main()
