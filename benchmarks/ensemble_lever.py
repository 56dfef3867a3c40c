"""A model ensemble as a lever, measured on ExONE `grouped` val (selection) and, for a kept choice, test.

    python benchmarks/ensemble_lever.py --members default,runs/a/best,runs/b/best [--subsets val]

Scores each member alone, then the mean of the members' probabilities (`grainseg.inference.Ensemble`),
with the same checks as `tta_lever.py`: per-tile Dice / IoU / boundary F1 on the 48 tiles of the subset
(as `grainseg evaluate`) and mean |dG| planimetric / intercept on its 4 stitched micrographs (as
`grainseg validate`, watershed instances).  `default` names the embedded model.
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
    ap.add_argument("--members", required=True, help="comma-separated model ids or directories ('default': embedded)")
    ap.add_argument("--subsets", default="val")
    ap.add_argument("--skip-single", action="store_true", help="score only the ensemble, not each member alone")
    ap.add_argument("--out", default=str(HERE / "results" / "ensemble_lever.json"))
    args = ap.parse_args()
    from grainseg.inference.ensemble import Ensemble
    from grainseg.inference.predict import load_model

    names = args.members.split(",")
    loaded = [load_model(None if n == "default" else n) for n in names]
    candidates = [] if args.skip_single else [(n, m) for n, (m, _) in zip(names, loaded)]
    candidates.append((f"ensemble of {len(names)}", Ensemble([m for m, _ in loaded])))
    record = {"members": [i for _, i in loaded], "machine": machine_info("cpu"), "results": {}}
    for subset in args.subsets.split(","):
        for name, m in candidates:
            entry, text = score_lever(m, subset)
            record["results"][f"{subset}/{name}"] = entry
            print(f"{subset:5s} {name:40s} {text}", flush=True)
            write_record(args.out, record)


if __name__ == "__main__":
    main()
