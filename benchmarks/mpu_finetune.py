"""Fine-tuning recipes for another material: can one labelled MPU-Net image teach the bundled default
that alloy's grain boundaries well enough to measure its grain size on the other image?

    python benchmarks/mpu_finetune.py [--recipes a,b] [--directions select,report] [--modalities OM,FESEM]
        [--out benchmarks/results/mpu_finetune.json] [--runs runs/mpu_finetune] [--table]

The learning curve (``learning_curve.py``, docs/finetune.md) found that 192 steps of ``grainseg finetune``
with BCE on one image helps the optical (OM) images a little and makes the SEM (FESEM, bright boundaries)
model collapse to "all grain".  Here each *recipe* (a list of ``grainseg finetune`` options) runs on the
same data layout as the learning curve's MPU points (the one training image linked ``EPOCH_ITEMS`` times
so that an epoch is a fixed number of steps; it validates on itself), from the bundled default, and is
scored on the held-out image of the same modality (watershed instances, package defaults).

Protocol, so that four images still give an honest check: the recipes are compared on the *select*
direction only (train on image 0, test on image 1, both modalities); the chosen recipe is then run once in
the *report* direction (train on image 1, test on image 0), which played no part in the choice.  Two
images per modality are a check, not a benchmark.

Resumable: a point in the output JSON is skipped; a finished training run is evaluated without retraining.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import learning_curve as lc  # noqa: E402

# Every recipe starts from the bundled default with the learning curve's budget (batch 2, 128 px crops,
# cosine, no early stopping, the encoder not frozen); the options below are added to that.
BASE = ["finetune", "--init", lc.DEFAULT, "--lr", "1e-4", "--freeze-encoder-epochs", "0", "--schedule", "cosine",
        "--batch-size", str(lc.BATCH), "--crop-size", str(lc.CROP), "--patience", "0",
        "--no-progress", "--polarity", "boundary"]
RECIPES: Dict[str, List[str]] = {
    "zero-shot": [],                                                  # the bundled default, not fine-tuned
    "bce": ["--loss", "bce", "--epochs", "2"],                       # the learning curve's point, today's code
    "dicece": ["--loss", "dicece", "--epochs", "2"],
    "boundary-bce": ["--loss", "boundary-bce", "--epochs", "2"],
    "dicece-512": ["--loss", "dicece", "--epochs", "2", "--input-size", "512"],
    "dicece-10ep": ["--loss", "dicece", "--epochs", "10"],
    "dicece-lr3e-4": ["--loss", "dicece", "--epochs", "2", "--lr", "3e-4"],
}
# Recipes named "defaults...": `grainseg finetune` as a user runs it, at its defaults of 2026-12-07 (30 epochs,
# patience 10, the encoder frozen 2 epochs, BCE, batch 2, 128 px crops) on a folder holding only the one
# training image (no repeated links), plus the options listed.  Every recipe names --boundary-grow, whose
# default became "auto" after these runs (the masks as drawn before: 0).
PLAIN: Dict[str, List[str]] = {
    "defaults": ["--epoch-items", "0", "--boundary-grow", "0"],  # as shipped before --epoch-items existed
    "defaults-ei64": ["--epoch-items", "64", "--boundary-grow", "0"],
    "defaults-ei64-dicece": ["--epoch-items", "64", "--loss", "dicece", "--boundary-grow", "0"],
    "defaults-ei16": ["--epoch-items", "16", "--boundary-grow", "0"],
    "defaults-ei16-dicece": ["--epoch-items", "16", "--loss", "dicece", "--boundary-grow", "0"],
    # the labels' lines widened to the ~9 px bands the default learnt: what --boundary-grow auto picks for
    # these images (OM 3.5 px at the 352 px input: +3 px a side; FESEM 4.8-5.8 px: +2), against the thinned
    # boundaries and merged grains of fine-tuning on thin lines; the defaults since 2026-12-07 (session 17)
    "defaults-ei64-grow2": ["--epoch-items", "64", "--boundary-grow", "2"],
    "defaults-ei64-grow3": ["--epoch-items", "64", "--boundary-grow", "3"],
}
RECIPES.update(PLAIN)
DIRECTIONS = {"select": (0, 1), "report": (1, 0)}  # (training image, held-out image)


def _plain_data(point: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """images/ + masks/ holding the one training image (what a user with one labelled image has)."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    src = lc.MPU / point["modality"]
    lc._link(folder / "images" / point["train"], src / "test_img" / point["train"])
    lc._link(folder / "masks" / point["train"], src / "test_boundary_label" / point["train"])
    items = max(1, int(dict(zip(PLAIN[point["recipe"]][::2], PLAIN[point["recipe"]][1::2])).get("--epoch-items", 1)))
    return {"train_image": point["train"], "train_images": 1, "repeats": 1, "train_items_per_epoch": items,
            "val_images": [Path(point["train"]).stem + " (itself)"]}


def point_for(modality: str, direction: str, recipe: str, seed: int = 0) -> Dict[str, Any]:
    train_i, test_i = DIRECTIONS[direction]
    imgs = lc.MPU_IMAGES[modality]
    suffix = f"/seed{seed}" if seed else ""
    return {"id": f"{modality}/{direction}/{recipe}{suffix}", "set": "mpu", "modality": modality, "recipe": recipe,
            "seed": seed, "direction": direction, "train": imgs[train_i], "test": imgs[test_i], "n": 1}


def train(point: Dict[str, Any], run: Path) -> Dict[str, Any]:
    """One recipe's ``grainseg finetune`` in a child process (the learning curve's runner, with this
    recipe's command and, for the plain recipes, a folder of the one image)."""
    plain = point["recipe"] in PLAIN
    head = ["finetune", "--no-progress", "--polarity", "boundary"] if plain else BASE
    command = head + RECIPES[point["recipe"]] + ["--seed", str(point["seed"])]
    return lc.train_point({**point, "set": "recipe"}, run, command=command, build=_plain_data if plain else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results" / "mpu_finetune.json"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "mpu_finetune"))
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}")
    ap.add_argument("--directions", default="select", help="select (train image 0) and/or report (train image 1)")
    ap.add_argument("--modalities", default="OM,FESEM")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (seed 0 has no suffix in the ids)")
    ap.add_argument("--table", action="store_true", help="print the JSON's points as a markdown table")
    ap.add_argument("--merge", default="", metavar="JSON,...",
                    help="merge the points (and machines) of these outputs of parallel runs into --out, then stop")
    args = ap.parse_args()
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {}
    record.setdefault("protocol", {"base": BASE, "recipes": RECIPES, "plain_recipes": list(PLAIN), "epoch_items": lc.EPOCH_ITEMS,
                                   "directions": {k: {"train_image": v[0], "test_image": v[1]}
                                                  for k, v in DIRECTIONS.items()},
                                   "instances": "watershed (package defaults)"})
    record["protocol"]["recipes"].update(RECIPES)
    record.setdefault("points", {})
    record.setdefault("machines", [])
    if args.merge:
        lc.merge_points(record, out, args.merge, each=lambda rec: record["protocol"]["recipes"].update(
            rec["protocol"]["recipes"]))
        return
    if args.table:
        print(table(record))
        print()
        print(summary(record))
        return
    record["machines"].append(lc.run_machine())
    for direction in args.directions.split(","):
        for modality in args.modalities.split(","):
            for recipe, seed in [(r, int(s)) for r in args.recipes.split(",") for s in args.seeds.split(",")]:
                if recipe not in RECIPES:
                    raise SystemExit(f"--recipes: unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
                if recipe == "zero-shot" and seed:
                    continue
                point = point_for(modality, direction, recipe, seed)
                pid = point["id"]
                if pid in record["points"]:
                    continue
                print(f"== {pid}", flush=True)
                if recipe == "zero-shot":
                    entry = {**point, "train_cpu_s": 0.0, "steps": 0, "best_epoch": None}
                    entry.update(lc.evaluate_point(point, None))
                else:
                    run = Path(args.runs) / pid.replace("/", "_")
                    entry = {**point, **train(point, run)}
                    entry.update(lc.evaluate_point(point, str(run / "train" / "best")))
                lc.store_point(record, out, pid, entry)
    print(table(record))


def _f(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def summary(record: Dict[str, Any]) -> str:
    """One row per (direction, modality, recipe): |dG| of every seed and their mean."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for p in record["points"].values():
        groups.setdefault((p["direction"], p["modality"], p["recipe"]), []).append(p)

    def vals(ps: List[Dict[str, Any]], key: str) -> str:
        v = [p[key] for p in ps]
        each = " / ".join(_f(x, ".2f") for x in v)
        return each if len(v) == 1 else f"{each} (mean {_f(None if None in v else sum(v) / len(v), '.2f')})"

    rows = ["| direction | modality | recipe | seeds | steps | grains pred (true) | BF1 (mean) | \\|dG\\| planimetric | "
            "\\|dG\\| intercept |", "|---|---|---|---|---|---|---|---|---|"]
    for (direction, modality, recipe), ps in sorted(groups.items(), key=lambda kv: (kv[0][0] != "select", kv[0][1],
                                                                                   kv[0][2])):
        steps = " / ".join(str(p["steps"]) for p in ps) if len({p["steps"] for p in ps}) > 1 else str(ps[0]["steps"])
        rows.append(f"| {direction} | {modality} | {recipe} | {len(ps)} | {steps} | "
                    f"{' / '.join(str(p['grains_pred']) for p in ps)} ({ps[0]['grains_true']}) | "
                    f"{sum(p['boundary_f1'] for p in ps) / len(ps):.3f} | {vals(ps, 'abs_dG_planimetric')} | "
                    f"{vals(ps, 'abs_dG_intercept')} |")
    return "\n".join(rows)


def table(record: Dict[str, Any]) -> str:
    rows = ["| modality | direction | recipe | seed | Dice | BF1 | grains pred / true | dG plan. | dG int. | steps | best epoch |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in record["points"].values():
        pi = p["per_image"][0]
        rows.append(f"| {p['modality']} | {p['direction']} (test {Path(p['test']).stem}) | {p['recipe']} | {p.get('seed', 0)} | "
                    f"{p['dice']:.4f} | {p['boundary_f1']:.3f} | {p['grains_pred']} / {p['grains_true']} | "
                    f"{_f(pi['dG_planimetric'], '+.2f')} | {_f(pi['dG_intercept'], '+.2f')} | {p['steps']} | "
                    f"{p['best_epoch']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
