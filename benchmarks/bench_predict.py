"""CPU predict time of a 1200x1600 micrograph, models side by side in one run.

    python benchmarks/bench_predict.py --models default,git:19c6f79,runs/x/best [--repeats 3]

Each model is a `--model` value of `grainseg predict` (``default`` = the embedded one), or
``git:<rev>`` for the embedded default as committed at that revision (its folder is read with
``git show``, so an older default can be timed beside the new one).  The micrograph is the 12 tiles
of ExONE RG23 stitched back (the `grouped` test micrograph `grainseg validate` measures).  Models are
timed in turns, ``--repeats`` rounds, one `predict_proba` each (the first round is a warm-up and not
counted); the median and the ratio to the first model are reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info, write_json  # noqa: E402

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))
EMBEDDED = "grainseg/weights/vmunet-aspp-small-exone316l"


def _git_model(rev: str, tmp: Path) -> Path:
    """The embedded default's folder as committed at ``rev``, written under ``tmp``."""
    out = tmp / rev
    out.mkdir(parents=True)
    root = HERE.parent
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{EMBEDDED}"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        blob = subprocess.run(["git", "show", f"{rev}:{EMBEDDED}/{name}"], cwd=root, check=True, capture_output=True)
        (out / name).write_bytes(blob.stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default", help="comma-separated: default, git:<rev>, an id or a folder")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--out", default=str(HERE / "results" / "predict_time.json"))
    args = ap.parse_args()
    import torch

    from grainseg.inference.predict import load_model, predict_proba
    from grainseg.inference.validate import collect_labelled

    item = next(i for i in collect_labelled(SHARED / "data" / "exone316l", "grouped", "test") if i.name == "RG23")
    image, _ = item.load("grain")
    specs = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for spec in specs:
            path = _git_model(spec[4:], Path(tmp)) if spec.startswith("git:") else (None if spec == "default" else spec)
            models[spec] = load_model(None if path is None else str(path))
        times = {s: [] for s in specs}
        for rnd in range(args.repeats + 1):
            for spec in (specs if rnd % 2 == 0 else specs[::-1]):
                t = time.perf_counter()
                predict_proba(models[spec][0], image)
                if rnd:
                    times[spec].append(time.perf_counter() - t)
    base = statistics.median(times[specs[0]])
    record = {"machine": machine_info("cpu"), "torch_threads": torch.get_num_threads(),
              "image": f"ExONE RG23 stitched, {image.shape[0]}x{image.shape[1]}", "repeats": args.repeats,
              "models": {s: {"preprocessing": getattr(models[s][0], "preprocessing", None),
                             "seconds": times[s], "median_s": statistics.median(times[s]),
                             f"ratio_to_{specs[0]}": statistics.median(times[s]) / base} for s in specs}}
    for s in specs:
        m = record["models"][s]
        print(f"{s:40s} median {m['median_s']:.2f} s  ({m['median_s'] / base:.2f}x {specs[0]})  "
              f"input {m['preprocessing'].get('input_size') if m['preprocessing'] else None}", flush=True)
    write_json(Path(args.out), record, indent=2)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
