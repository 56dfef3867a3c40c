"""Grain-size validation of a model: the instance methods compared on ExONE `grouped` val and test
micrographs (tiles stitched back to 1200x1600) and the MPU-Net cross-material check.

    python benchmarks/grain_size_validation.py [--model M] [--methods watershed] [--rescale auto|none]
        [--out benchmarks/results/grain_size_default.json]

Selection of the method and its parameters happens on val only (see docs/analysis.md); test and
MPU-Net are reported.  MPU-Net stores boundary labels (white = boundary) in its own folders; they are
linked into a temporary images/ + masks/ folder and read with polarity "boundary".
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info, write_json  # noqa: E402  (CPU model, flags, torch, commit, date)

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))


def summary_text(s: dict) -> str:
    """Grain counts and mean |dG| (bias) of a validation summary, on one line."""
    nan = float("nan")
    return (f"grains {s['grains_pred']}/{s['grains_true']} "
            f"|dG| plan {s['mean_abs_dG_planimetric'] or nan:.3f} ({s['bias_dG_planimetric'] or 0:+.3f}) "
            f"int {s['mean_abs_dG_intercept'] or nan:.3f} ({s['bias_dG_intercept'] or 0:+.3f})")


def write_record(path, record: dict) -> None:
    """Write the results JSON (again after every step, so an interrupted run keeps what it measured)."""
    write_json(Path(path), record, indent=2)
    print(f"-> {path}", flush=True)


def score_lever(model, subset: str) -> tuple:
    """Score ``model`` on ExONE `grouped` ``subset`` as the lever benchmarks do: per-tile Dice / IoU /
    boundary F1 on its 48 tiles (as `grainseg evaluate`) and the grain-size check on its 4 stitched
    micrographs (as `grainseg validate`, watershed instances).  Returns (record entry, one-line text)."""
    from grainseg.data.datasets import SegmentationDataset
    from grainseg.inference.validate import collect_labelled, validate
    from grainseg.train.evaluation import evaluate_model

    data = SHARED / "data" / "exone316l"
    ds = SegmentationDataset(data, "grouped", subset, in_chans=int(getattr(model, "in_chans", 3)))
    t = time.perf_counter()
    e = evaluate_model(model, ds)["mean"]
    t_tiles = time.perf_counter() - t
    t = time.perf_counter()
    va = validate(model, collect_labelled(data, "grouped", subset), grain_kw={"method": "watershed"})
    t_micro = time.perf_counter() - t
    s = va["summary"]
    entry = {"tiles": e, "tile_seconds": round(t_tiles, 1), "micrographs": s, "micrograph_seconds": round(t_micro, 1),
             "images": [{k: r.get(k) for k in ("image", "dice", "boundary_f1", "grains_true", "grains_pred",
                                               "dG_planimetric", "dG_intercept")} for r in va["rows"]]}
    text = (f"tiles Dice {e['dice']:.4f} IoU {e['iou']:.4f} BF1 {e['boundary_f1']:.3f} ({t_tiles:.0f} s) | "
            f"micrographs {summary_text(s)} ({t_micro:.0f} s)")
    return entry, text


def _mpu_folder(modality: str, tmp: Path) -> Path:
    src = SHARED / "data" / "mpu_net" / modality
    root = tmp / modality
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for f in sorted((src / "test_img").iterdir()):
        (root / "images" / f.name).symlink_to(f)
        (root / "masks" / f.name).symlink_to(src / "test_boundary_label" / f.name)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--out", default=str(HERE / "results" / "grain_size_default.json"), help="results JSON")
    ap.add_argument("--methods", default="threshold,watershed")
    ap.add_argument("--rescale", default="auto", help="auto (the package's default), none or a factor")
    args = ap.parse_args()
    from grainseg.inference.predict import load_model
    from grainseg.inference.validate import collect_labelled, validate

    model, info = load_model(args.model)
    rescale = None if args.rescale == "none" else args.rescale if args.rescale == "auto" else float(args.rescale)
    exone = SHARED / "data" / "exone316l"
    record = {"model": info, "machine": machine_info("cpu"), "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {f"exone_grouped_{sub}": (collect_labelled(exone, "grouped", sub), "grain") for sub in ("val", "test")}
        for mod in ("OM", "FESEM"):
            sets[f"mpu_net_{mod}"] = (collect_labelled(_mpu_folder(mod, Path(tmp))), "boundary")
        for name, (items, polarity) in sets.items():
            for method in args.methods.split(","):
                t = time.perf_counter()
                res = validate(model, items, polarity=polarity, grain_kw={"method": method}, rescale=rescale)
                record["results"][f"{name}/{method}"] = {
                    "summary": res["summary"], "instances": res["instances"], "seconds": round(time.perf_counter() - t, 1),
                    "rescale": args.rescale,
                    "images": [{k: r.get(k) for k in ("image", "rescale", "dice", "boundary_f1", "adapted_rand_error", "grains_true",
                                                      "grains_pred", "G_planimetric_true", "G_intercept_true",
                                                      "G_intercept_direct_e112_true", "dG_planimetric", "dG_intercept",
                                                      "dG_intercept_direct_e112")} for r in res["rows"]]}
                s = res["summary"]
                print(f"{name:22s} {method:9s} Dice {s['mean_dice']:.4f} BF1 {s['mean_boundary_f1']:.3f} "
                      f"ARE {s['mean_adapted_rand_error'] or float('nan'):.3f} {summary_text(s)}", flush=True)
    write_record(args.out, record)


if __name__ == "__main__":
    main()
