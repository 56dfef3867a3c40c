"""Measure the robustness augmentations on validation data: one fine-tuning run per ``--augment-extra``
option (plus the baseline without extras), everything else equal, then the best epoch of each.

Each run is ``grainseg finetune`` (or ``train`` with ``--command train``) with the given arguments and
``--augment-extra NAME``, in ``OUT/<name>/``; the JSON (``OUT/ablation.json``) lists per option the
best epoch's val loss, val Dice, the all-grain Dice (the score to beat) and the difference to the
baseline, ranked by val loss.  Runs that exist are resumed or reused (``--resume`` is passed when
``OUT/<name>/checkpoint.pt`` exists), so an interrupted ablation continues.

``--mpu DIR`` (``../shared/data/mpu_net``) also runs every option's ``best/`` (and the starting model,
``--init``'s, as ``start``) on the MPU-Net micrographs - another alloy, optical and SEM (bright
boundaries) - as a cross-material check: per modality Dice, boundary F1 (2 px), true / predicted grains
and |dG| (planimetric, intercept) of ``grainseg.inference.validate``.  Four images are a check, not a
benchmark; the options are chosen on the val numbers.

    python benchmarks/augment_ablation.py --out runs/ablation --options invert,gamma,blur -- \\
        --data ../shared/data/exone316l --split grouped --epochs 10 --input-size 256
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from grainseg.data.transforms import EXTRA_AUGMENTATIONS, parse_extra

BASELINE = "none"


def _best(metrics: dict) -> Dict[str, Optional[float]]:
    epochs = {e["epoch"]: e for e in metrics.get("epochs", [])}
    best = epochs.get(metrics.get("best_epoch"))
    if best is None:
        return {"best_epoch": None, "val_loss": None, "val_dice": None, "val_dice_all_grain": None}
    return {"best_epoch": best["epoch"], "val_loss": best["val_loss"], "val_dice": best["val_dice"],
            "val_boundary_f1": best.get("val_boundary_f1"),
            "val_dice_all_grain": best.get("val_dice_all_grain"), "epochs_run": len(epochs)}


def cross_material(model_spec: Optional[str], mpu: Path) -> Dict[str, Dict[str, float]]:
    """The model (a folder or id; None: the default) on every MPU-Net image, summarised per modality."""
    from grainseg.inference.predict import load_model
    from grainseg.inference.validate import LabelledImage, validate

    model, _ = load_model(model_spec)
    out: Dict[str, Dict[str, float]] = {}
    for modality in ("OM", "FESEM"):
        folder = mpu / modality
        names = sorted(p.name for p in (folder / "test_img").iterdir()) if (folder / "test_img").is_dir() else []
        if not names:
            continue
        items = [LabelledImage(Path(n).stem, [[(folder / "test_img" / n, folder / "test_boundary_label" / n)]])
                 for n in names]
        s = validate(model, items, polarity="boundary")["summary"]
        out[modality] = {"n_images": s["n_images"], "dice": s["mean_dice"], "boundary_f1": s["mean_boundary_f1"],
                         "grains_true": s["grains_true"], "grains_pred": s["grains_pred"],
                         "abs_dG_planimetric": s["mean_abs_dG_planimetric"],
                         "abs_dG_intercept": s["mean_abs_dG_intercept"]}
    return out


def run_ablation(out: Path, options: List[str], train_args: List[str], command: str = "finetune",
                 mpu: Optional[Path] = None) -> dict:
    """Run (or reuse) one training per option and return the summary (also written to OUT/ablation.json)."""
    from grainseg.cli import main

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [BASELINE, *options]:
        run_dir = out / name
        metrics_path = run_dir / "metrics.json"
        args = [command, *train_args, "--out", str(run_dir), "--no-progress"]
        if name != BASELINE:
            args += ["--augment-extra", name]
        if (run_dir / "checkpoint.pt").is_file():
            args.append("--resume")
        code = main(args, catch_errors=True)
        if code != 0 or not metrics_path.is_file():
            rows.append({"option": name, "error": f"exit code {code}"})
            continue
        row = {"option": name, **_best(json.loads(metrics_path.read_text()))}
        if mpu is not None:
            row["mpu"] = cross_material(str(run_dir / "best"), mpu)
        rows.append(row)
    start = None
    if mpu is not None:
        init = train_args[train_args.index("--init") + 1] if "--init" in train_args else None
        start = {"model": init or "the default", "mpu": cross_material(init, mpu)}
    base = next((r for r in rows if r["option"] == BASELINE and r.get("val_loss") is not None), None)
    for r in rows:
        if base is not None and r.get("val_loss") is not None:
            r["val_loss_vs_none"] = r["val_loss"] - base["val_loss"]
            r["val_dice_vs_none"] = r["val_dice"] - base["val_dice"]
    ranked = sorted((r for r in rows if r.get("val_loss") is not None), key=lambda r: r["val_loss"])
    summary = {"command": command, "train_args": train_args, "rows": rows, "start": start,
               "ranking_by_val_loss": [r["option"] for r in ranked]}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the runs and ablation.json")
    p.add_argument("--options", default="all", help=f"comma-separated, from {', '.join(EXTRA_AUGMENTATIONS)} (or all)")
    p.add_argument("--command", choices=["finetune", "train"], default="finetune")
    p.add_argument("--mpu", type=Path, default=None,
                   help="MPU-Net folder (OM/, FESEM/): also check every run's best/ on its images")
    args = p.parse_args(argv)
    if any(a in ("--out", "--augment-extra", "--resume") for a in rest):
        p.error("pass --out here, not after --; --augment-extra and --resume are set per run")
    summary = run_ablation(Path(args.out), list(parse_extra(args.options)), rest, args.command, args.mpu)
    for r in summary["rows"]:
        if "error" in r:
            print(f"{r['option']:>8}: {r['error']}")
        else:
            print(f"{r['option']:>8}: best epoch {r['best_epoch']}, val_loss {r['val_loss']:.4f}, val_dice "
                  f"{r['val_dice']:.4f} (all-grain {r['val_dice_all_grain']:.4f})"
                  + "".join(f"; {m} dice {v['dice']:.3f} bf1 {v['boundary_f1']:.3f} grains {v['grains_pred']}/"
                            f"{v['grains_true']}" for m, v in (r.get("mpu") or {}).items()))
    print("ranking by val loss:", ", ".join(summary["ranking_by_val_loss"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
