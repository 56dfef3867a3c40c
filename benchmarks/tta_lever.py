"""Test-time augmentation as a lever, measured on ExONE `grouped` val (selection) and test (report).

    python benchmarks/tta_lever.py [--model M] [--subsets val,test] [--tta none,flips,d4]

For each TTA set: per-tile Dice / IoU / boundary F1 on the 48 tiles of the subset (as `grainseg
evaluate`), and the grain-size check on its 4 stitched micrographs (as `grainseg validate`, watershed
instances): mean |dG| planimetric and intercept, with the seconds each took on this machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info  # noqa: E402  (CPU model, flags, torch, commit, date)
from grain_size_validation import score_lever, write_record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--subsets", default="val,test")
    ap.add_argument("--tta", default="none,flips,d4")
    ap.add_argument("--out", default=str(HERE / "results" / "tta_lever.json"))
    args = ap.parse_args()
    from grainseg.inference.predict import load_model
    from grainseg.inference.tta import TTA

    model, info = load_model(args.model)
    record = {"model": info, "machine": machine_info("cpu"), "results": {}}
    for subset in args.subsets.split(","):
        for name in args.tta.split(","):
            entry, text = score_lever(TTA(model, name), subset)
            record["results"][f"{subset}/{name}"] = entry
            print(f"{subset:5s} tta={name:6s} {text}", flush=True)
            write_record(args.out, record)


if __name__ == "__main__":
    main()
