"""The decision threshold as a lever: per-tile Dice / IoU / boundary F1 against the probability cut-off.

    python benchmarks/threshold_lever.py [--model M] [--subsets val] [--thresholds 0.3,0.4,0.5,0.6,0.7]

The model predicts each tile of ExONE `grouped` <subset> once (as `grainseg evaluate`: the tile's
400x400 through `predict_proba`); the saved probabilities are then cut at every threshold and scored
with the same `image_metrics`.  Also reports the boundary (non-grain) pixel fraction of the prediction
beside the truth's, which is what the threshold moves.  Select on val; read test only for a kept choice.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info  # noqa: E402  (CPU model, flags, torch, commit, date)
from grain_size_validation import SHARED, write_record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--subsets", default="val")
    ap.add_argument("--thresholds", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65,0.7")
    ap.add_argument("--out", default=str(HERE / "results" / "threshold_lever.json"))
    args = ap.parse_args()
    from grainseg.data.datasets import SegmentationDataset
    from grainseg.inference import predict_proba
    from grainseg.inference.predict import load_model
    from grainseg.train.metrics import METRIC_NAMES, image_metrics, summarize

    thresholds = [float(t) for t in args.thresholds.split(",")]
    model, info = load_model(args.model)
    data = SHARED / "data" / "exone316l"
    record = {"model": info, "machine": machine_info("cpu"), "results": {}}
    for subset in args.subsets.split(","):
        ds = SegmentationDataset(data, "grouped", subset, in_chans=int(getattr(model, "in_chans", 3)))
        t = time.perf_counter()
        pairs = []
        for i in range(len(ds)):
            image, mask = ds.read_raw(i)
            pairs.append((predict_proba(model, image), np.asarray(mask)))
        seconds = time.perf_counter() - t
        true_bnd = float(np.mean([np.mean(m == 0) for _, m in pairs]))
        rows = {}
        for th in thresholds:
            mean = summarize([{k: r[k] for k in METRIC_NAMES}
                              for r in (image_metrics(p, m, threshold=th) for p, m in pairs)])
            pred_bnd = float(np.mean([np.mean(p < th) for p, _ in pairs]))
            rows[f"{th:g}"] = {**mean, "pred_boundary_fraction": pred_bnd}
            print(f"{subset:5s} threshold {th:.2f}: Dice {mean['dice']:.4f} IoU {mean['iou']:.4f} "
                  f"BF1 {mean['boundary_f1']:.3f} boundary fraction {pred_bnd:.3f} (true {true_bnd:.3f})", flush=True)
        record["results"][subset] = {"tiles": len(pairs), "predict_seconds": round(seconds, 1),
                                     "true_boundary_fraction": true_bnd, "by_threshold": rows}
        write_record(args.out, record)


if __name__ == "__main__":
    main()
