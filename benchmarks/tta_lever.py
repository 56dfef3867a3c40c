"""Test-time augmentation as a lever, measured on ExONE `grouped` val (selection) and test (report).

    python benchmarks/tta_lever.py [--model M] [--subsets val,test] [--tta none,flips,d4]

For each TTA set: per-tile Dice / IoU / boundary F1 on the 48 tiles of the subset (as `grainseg
evaluate`), and the grain-size check on its 4 stitched micrographs (as `grainseg validate`, watershed
instances): mean |dG| planimetric and intercept, with the seconds each took on this machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info  # noqa: E402  (CPU model, flags, torch, commit, date)
from grain_size_validation import SHARED, summary_text, write_record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--subsets", default="val,test")
    ap.add_argument("--tta", default="none,flips,d4")
    ap.add_argument("--out", default=str(HERE / "results" / "tta_lever.json"))
    args = ap.parse_args()
    from grainseg.data.datasets import SegmentationDataset
    from grainseg.inference.predict import load_model
    from grainseg.inference.tta import TTA
    from grainseg.inference.validate import collect_labelled, validate
    from grainseg.train.evaluation import evaluate_model

    model, info = load_model(args.model)
    data = SHARED / "data" / "exone316l"
    record = {"model": info, "machine": machine_info("cpu"), "results": {}}
    for subset in args.subsets.split(","):
        ds = SegmentationDataset(data, "grouped", subset, in_chans=int(getattr(model, "in_chans", 3)))
        items = collect_labelled(data, "grouped", subset)
        for name in args.tta.split(","):
            m = TTA(model, name)
            t = time.perf_counter()
            ev = evaluate_model(m, ds)
            t_tiles = time.perf_counter() - t
            t = time.perf_counter()
            va = validate(m, items, grain_kw={"method": "watershed"})
            t_micro = time.perf_counter() - t
            s, e = va["summary"], ev["mean"]
            record["results"][f"{subset}/{name}"] = {
                "tiles": e, "tile_seconds": round(t_tiles, 1), "micrographs": s, "micrograph_seconds": round(t_micro, 1),
                "images": [{k: r.get(k) for k in ("image", "dice", "boundary_f1", "grains_true", "grains_pred",
                                                  "dG_planimetric", "dG_intercept")} for r in va["rows"]]}
            print(f"{subset:5s} tta={name:6s} tiles Dice {e['dice']:.4f} IoU {e['iou']:.4f} BF1 {e['boundary_f1']:.3f} "
                  f"({t_tiles:.0f} s) | micrographs {summary_text(s)} ({t_micro:.0f} s)", flush=True)
            write_record(args.out, record)


if __name__ == "__main__":
    main()
