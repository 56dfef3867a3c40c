"""Learning curve of fine-tuning (issue 15): from the bundled default and from scratch, with 1, 2, 4, 8
and 16 labelled ExONE source micrographs, and with one MPU-Net image per modality; and from a
synthetic-pretrained model when ``--synthetic DIR`` (default ``runs/synthetic_pre/best``) holds one, made by
``grainseg train --model vmunet_aspp_small --data synthetic:1600:352x352 --input-size 352x352 --crop-size 128
--batch-size 8 --lr 3e-4 --schedule cosine --epochs 5 --loss bce --seed 0 --out runs/synthetic_pre``.

    python benchmarks/learning_curve.py [--out benchmarks/results/learning_curve.json] [--runs runs/learning_curve]
        [--only exone,mpu] [--points ID,ID,...] [--plot-only] [--table]

Every point is one ``grainseg finetune`` (from ``grainseg/vmunet-aspp-small-exone316l``) or ``grainseg
train --model vmunet_aspp_small`` (from scratch) run, in a child process, with **the same step budget**:
``EPOCHS`` epochs of ``EPOCH_ITEMS`` training items (batch ``BATCH``, random ``CROP`` px crops of the images
resized to the default's 352 px input).  The training set of a point is a temporary ``images/`` +
``masks/`` folder of symlinks in which every labelled image is linked ``EPOCH_ITEMS / n_images`` times under
distinct names (``<stem>-rep07``); each copy gets its own crop and augmentation, so an epoch is the same
number of steps whatever the number of labelled images, and validation runs after each of them.

- **ExONE** (``../shared/data/exone316l``, ``grouped`` split): N source micrographs (12 tiles of 400 px each)
  drawn from the 32 ``grouped`` train sources with a seeded permutation, nested (the 2 contain the 1, ...).
  Validation (checkpoint selection on val loss): row 2 of each of the 4 ``grouped`` val sources (16 tiles).
  Test: the 4 ``grouped`` test micrographs, stitched back to 1200 x 1600 and predicted once each
  (``grainseg.inference.validate.validate``, watershed instances): mean |dG| planimetric and intercept on
  the 4 micrographs, and Dice and boundary F1 (2 px) per 400 px tile cut from the same probability maps
  (48 tiles).  N = 0 is the default without fine-tuning (also evaluated tile by tile with
  ``evaluate_model``, to compare the two ways of predicting a tile).
- **MPU-Net** (``../shared/data/mpu_net``, 2 images per modality, white boundary labels, ``--polarity
  boundary``): train on one image of a modality, test on the other.  With one image nothing can be held out,
  so the training image validates (the documented one-image fallback).  Baseline: the default, zero-shot,
  on the held-out image.

Resumable: a point whose result is in the output JSON is skipped; a finished training run (its
``timing.json``) is evaluated without retraining; an unfinished one is started again.  Times: wall seconds
and CPU seconds (of the child process for training, of this process for evaluation) per point, with the
load average; on a shared machine the CPU seconds are the comparable number.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # the package of this checkout (or snapshot), not another installed copy
from bench_scan import machine_info, write_json  # noqa: E402

SHARED = Path(os.environ.get("GRAINSEG_SHARED", ROOT.parent / "shared"))
EXONE = SHARED / "data" / "exone316l"
MPU = SHARED / "data" / "mpu_net"
DEFAULT = "grainseg/vmunet-aspp-small-exone316l"

# The fixed budget of every point.
BATCH = 2
CROP = 128
EPOCH_ITEMS = 192          # 96 steps per epoch (16 ExONE sources = 192 tiles, seen once an epoch)
EPOCHS = 2                 # 192 optimizer steps per point
INPUT = 352                # the default model's input size (config.json preprocessing)
SEED = 0                   # training seed
DRAW_SEED = 0              # seed of the nested draw of ExONE sources
NS = (1, 2, 4, 8, 16)
INITS = {
    # the bundled default, at grainseg finetune's defaults (lr 1e-4 cosine, batch 2, 128 px crops), except that
    # the encoder is not frozen (the finetune default freezes it 2 of 30 epochs; in a 2-epoch budget that
    # would be half the run) and there is no early stopping (every point gets the whole budget)
    "default": ["finetune", "--init", DEFAULT, "--lr", "1e-4", "--freeze-encoder-epochs", "0"],
    # from scratch: the architecture of the default at its input size, with the default's own training lr
    "scratch": ["train", "--model", "vmunet_aspp_small", "--input-size", str(INPUT), "--lr", "3e-4"],
}
# A third start, when its folder exists (``--synthetic``): vmunet_aspp_small pre-trained on domain-randomised
# synthetic micrographs only (no real image; see docs/finetune.md), fine-tuned at the from-scratch lr, so that
# against "scratch" only the starting weights differ.  "synthetic-zero-shot" is that model without fine-tuning.
SYNTHETIC_DEFAULT = ROOT / "runs" / "synthetic_pre" / "best"


def add_synthetic_init(folder: Path) -> None:
    INITS["synthetic"] = ["finetune", "--init", str(folder), "--lr", "3e-4", "--freeze-encoder-epochs", "0"]


COMMON = ["--schedule", "cosine", "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--crop-size", str(CROP),
          "--patience", "0", "--loss", "bce", "--seed", str(SEED), "--no-progress"]
MPU_IMAGES = {m: sorted(p.name for p in (MPU / m / "test_img").iterdir()) if (MPU / m / "test_img").is_dir() else []
              for m in ("OM", "FESEM")}


def exone_draw() -> List[str]:
    """The grouped train sources in the seeded order; the first N are point N's."""
    splits = json.loads((EXONE / "splits.json").read_text())
    sources = list(splits["grouped_sources"]["train"])
    random.Random(DRAW_SEED).shuffle(sources)
    return sources


def exone_tiles(source: str) -> List[str]:
    return [f"{source}_{r}_{c}" for r in (1, 2, 3) for c in (1, 2, 3, 4)]


def planned_points() -> List[Dict[str, Any]]:
    """Every point, in the order they run (the cheap baselines first, then N spread out, then the rest)."""
    pts: List[Dict[str, Any]] = []
    for zero in ("zero-shot", "synthetic-zero-shot") if "synthetic" in INITS else ("zero-shot",):
        pts.append({"id": f"exone/{zero}/N0", "set": "exone", "init": zero, "n": 0})
        for mod, imgs in MPU_IMAGES.items():
            for i, test in enumerate(imgs):
                pts.append({"id": f"mpu/{mod}/{zero}/test{i}", "set": "mpu", "modality": mod, "init": zero,
                            "n": 0, "test": test})
    order = [1, 16, 4, 2, 8]
    for n in order[:3]:
        for init in INITS:
            pts.append({"id": f"exone/{init}/N{n}", "set": "exone", "init": init, "n": n})
    for mod, imgs in MPU_IMAGES.items():  # one direction first: train on image 0, test on image 1
        for init in INITS:
            pts.append({"id": f"mpu/{mod}/{init}/test1", "set": "mpu", "modality": mod, "init": init, "n": 1,
                        "train": imgs[0], "test": imgs[1]})
    for n in order[3:]:
        for init in INITS:
            pts.append({"id": f"exone/{init}/N{n}", "set": "exone", "init": init, "n": n})
    for mod, imgs in MPU_IMAGES.items():  # the other direction
        for init in INITS:
            pts.append({"id": f"mpu/{mod}/{init}/test0", "set": "mpu", "modality": mod, "init": init, "n": 1,
                        "train": imgs[1], "test": imgs[0]})
    return pts


def _link(dst: Path, src: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def build_data(point: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """The point's images/ + masks/ folder of symlinks and its splits.json; returns what it holds."""
    if folder.exists():
        shutil.rmtree(folder)
    if point["set"] == "exone":
        sources = exone_draw()[: point["n"]]
        pairs = [(EXONE / "RG" / f"{t}.jpg", EXONE / "RGMask" / f"RGMask{t[2:]}.jpg")
                 for s in sources for t in exone_tiles(s)]
        val = [(EXONE / "RG" / f"{s}_2_{c}.jpg", EXONE / "RGMask" / f"RGMask{s[2:]}_2_{c}.jpg")
               for s in json.loads((EXONE / "splits.json").read_text())["grouped_sources"]["val"] for c in (1, 2, 3, 4)]
        held = {"train_sources": sources}
    else:
        src = MPU / point["modality"]
        pairs = [(src / "test_img" / point["train"], src / "test_boundary_label" / point["train"])]
        val = None  # one image: it validates itself
        held = {"train_image": point["train"]}
    if EPOCH_ITEMS % len(pairs):
        raise ValueError(f"{len(pairs)} training images do not divide an epoch of {EPOCH_ITEMS} items")
    reps = EPOCH_ITEMS // len(pairs)
    train_names, val_names = [], []
    for img, mask in pairs:
        for k in range(reps):
            name = f"{img.stem}-rep{k:03d}{img.suffix}"
            _link(folder / "images" / name, img)
            _link(folder / "masks" / f"{img.stem}-rep{k:03d}{mask.suffix}", mask)
            train_names.append(name)
    if val is None:
        val_names = [train_names[0]]
    else:
        for img, mask in val:
            _link(folder / "images" / img.name, img)
            _link(folder / "masks" / f"{img.stem}{mask.suffix}", mask)
            val_names.append(img.name)
    (folder / "splits.json").write_text(json.dumps({"lc": {"train": train_names, "val": val_names, "test": []}}))
    return {**held, "train_images": len(pairs), "repeats": reps, "train_items_per_epoch": len(train_names),
            "val_images": [Path(v).stem for v in val_names] if val is not None else [pairs[0][0].stem + " (itself)"]}


def train_point(point: Dict[str, Any], run: Path, command: Optional[List[str]] = None,
                build: Optional[Callable[[Dict[str, Any], Path], Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Train (or reuse a finished run); the timing record.  ``command``: the grainseg arguments before
    --data (default: the point's start and COMMON); ``build``: the data-folder builder (default
    :func:`build_data`)."""
    timing_file = run / "timing.json"
    if timing_file.is_file() and (run / "train" / "best" / "model.safetensors").is_file():
        return json.loads(timing_file.read_text())
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    held = (build or build_data)(point, run / "data")
    head = command if command is not None else [*INITS[point["init"]], *COMMON]
    cmd = [sys.executable, "-m", "grainseg", *head, "--data", str(run / "data"),
           "--split", "auto", "--out", str(run / "train")]
    if point["set"] == "mpu":
        cmd += ["--polarity", "boundary"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print("$", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(run / "train.log", "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stdout.write((run / "train.log").read_text()[-3000:])
        raise RuntimeError(f"training of {point['id']} failed (exit {proc.returncode}); see {run / 'train.log'}")
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    epochs = metrics["epochs"]
    timing = {"command": cmd[1:], "data": held, "train_wall_s": round(wall, 1),
              "train_cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
              "load_average_1min_at_start": load, "epochs": len(epochs),
              "steps": len(epochs) * math.ceil(held["train_items_per_epoch"] / BATCH),
              "best_epoch": metrics["best_epoch"],
              "history": [{k: e.get(k) for k in ("epoch", "train_loss", "val_loss", "val_dice", "val_boundary_f1",
                                                 "val_dice_all_grain", "seconds")} for e in epochs]}
    timing_file.write_text(json.dumps(timing, indent=2))
    return timing


def _tile_metrics(maps: List[Dict[str, np.ndarray]], tile: int = 400) -> Dict[str, Any]:
    """Dice and boundary F1 of every 400 px tile cut from the stitched probability maps."""
    from grainseg.train.metrics import image_metrics

    rows = []
    for m in maps:
        prob, mask = m["prob"], m["mask"]
        for r in range(prob.shape[0] // tile):
            for c in range(prob.shape[1] // tile):
                sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                met = image_metrics(prob[sl], mask[sl])
                rows.append({k: met[k] for k in ("dice", "boundary_f1")})
    return {"n_tiles": len(rows), "dice": float(np.mean([r["dice"] for r in rows])),
            "boundary_f1": float(np.mean([r["boundary_f1"] for r in rows]))}


def _mpu_item(modality: str, name: str):
    from grainseg.inference.validate import LabelledImage

    src = MPU / modality
    return LabelledImage(Path(name).stem, [[(src / "test_img" / name, src / "test_boundary_label" / name)]])


def evaluate_point(point: Dict[str, Any], model_spec: Optional[str]) -> Dict[str, Any]:
    from grainseg.inference.predict import load_model
    from grainseg.inference.validate import collect_labelled, validate

    t0, c0 = time.perf_counter(), time.process_time()
    model, info = load_model(model_spec)
    out: Dict[str, Any] = {"model_sha256": info.get("sha256")}
    if point["set"] == "exone":
        items = collect_labelled(EXONE, "grouped", "test")
        res = validate(model, items, grain_kw={"method": "watershed"}, keep_maps=True)
        s = res["summary"]
        tiles = _tile_metrics(res["maps"])
        out.update(dice=tiles["dice"], boundary_f1=tiles["boundary_f1"], n_tiles=tiles["n_tiles"],
                   micrograph_dice=s["mean_dice"], micrograph_boundary_f1=s["mean_boundary_f1"])
        if point["init"] == "zero-shot":  # also tile by tile, as grainseg evaluate does
            from grainseg.data.datasets import SegmentationDataset
            from grainseg.train.evaluation import evaluate_model

            ds = SegmentationDataset(EXONE, "grouped", "test", preprocessing=model.preprocessing)
            ev = evaluate_model(model, ds)["mean"]
            out.update(per_tile_prediction_dice=ev["dice"], per_tile_prediction_boundary_f1=ev["boundary_f1"])
    else:
        res = validate(model, [_mpu_item(point["modality"], point["test"])], polarity="boundary",
                       grain_kw={"method": "watershed"})
        s = res["summary"]
        out.update(dice=s["mean_dice"], boundary_f1=s["mean_boundary_f1"], test_image=point["test"])
    out.update(abs_dG_planimetric=s["mean_abs_dG_planimetric"], abs_dG_intercept=s["mean_abs_dG_intercept"],
               bias_dG_planimetric=s["bias_dG_planimetric"], bias_dG_intercept=s["bias_dG_intercept"],
               adapted_rand_error=s["mean_adapted_rand_error"], grains_pred=s["grains_pred"],
               grains_true=s["grains_true"], n_images=s["n_images"],
               per_image=[{k: r.get(k) for k in ("image", "dice", "boundary_f1", "grains_true", "grains_pred",
                                                  "dG_planimetric", "dG_intercept")} for r in res["rows"]],
               eval_wall_s=round(time.perf_counter() - t0, 1), eval_cpu_s=round(time.process_time() - c0, 1))
    return out


def store_point(record: Dict[str, Any], out: Path, pid: str, entry: Dict[str, Any]) -> None:
    """Add a finished point to the record, write it (so a stopped run resumes after it), print its line."""
    record["points"][pid] = entry
    write_json(out, record, indent=2)

    def g(key: str, spec: str = ".3f") -> str:
        return "n/a" if entry.get(key) is None else format(entry[key], spec)

    print(f"   {pid}: Dice {g('dice', '.4f')} BF1 {g('boundary_f1')} |dG| plan {g('abs_dG_planimetric')} int "
          f"{g('abs_dG_intercept')} (bias {g('bias_dG_planimetric', '+.3f')} / {g('bias_dG_intercept', '+.3f')}) "
          f"grains {entry['grains_pred']}/{entry['grains_true']}; train {g('train_cpu_s', '.0f')} s CPU "
          f"({g('train_wall_s', '.0f')} s wall, {g('steps', 'd')} steps, best epoch {entry.get('best_epoch')}), eval "
          f"{g('eval_cpu_s', '.0f')} s CPU ({g('eval_wall_s', '.0f')} s wall)", flush=True)


def run_machine() -> Dict[str, Any]:
    """The machine entry a resumable benchmark appends to its record at every start: the machine, the
    grainseg it imports, the commit, and the threads, niceness and cores it runs with."""
    import grainseg

    return {**machine_info("cpu"), "grainseg_file": grainseg.__file__,
            "source_commit": os.environ.get("GRAINSEG_COMMIT") or machine_info_commit(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "nice": os.nice(0),
            "affinity": sorted(os.sched_getaffinity(0))}


def merge_points(record: Dict[str, Any], out: Path, others: str,
                 each: Optional[Callable[[Dict[str, Any]], None]] = None) -> None:
    """``--merge``: add the points and machines of the comma-separated outputs of parallel runs to the
    record and write it to ``out``; SystemExit when one repeats a point.  ``each(other_record)`` merges
    what else a script keeps."""
    for other in filter(None, others.split(",")):
        rec = json.loads(Path(other).read_text())
        clash = sorted(set(rec["points"]) & set(record["points"]))
        if clash:
            raise SystemExit(f"--merge: {other} repeats points of {out}: {', '.join(clash)}")
        record["points"].update(rec["points"])
        record["machines"] += rec.get("machines", [])
        if each is not None:
            each(rec)
    write_json(out, record, indent=2)
    print(f"-> {out}: {len(record['points'])} points")


def machine_info_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=False).stdout.strip()
    except OSError:
        return ""


def all_grain_dice() -> Dict[str, float]:
    """Dice of predicting grain everywhere on each test set (the score a model must beat: interiors cover
    most of a micrograph): the 48 ExONE grouped test tiles (mean per tile) and each MPU-Net image."""
    from grainseg.data.io import read_mask
    from grainseg.train.metrics import dice_score

    out: Dict[str, float] = {}
    tiles = json.loads((EXONE / "splits.json").read_text())["grouped"]["test"]
    out["exone_grouped_test_tiles"] = float(np.mean([
        dice_score(np.ones(m.shape, np.float32), m) for m in
        (read_mask(EXONE / "RGMask" / f"RGMask{Path(t).stem[2:]}.jpg", threshold=127, polarity="grain") for t in tiles)]))
    for mod, imgs in MPU_IMAGES.items():
        for i, name in enumerate(imgs):
            m = read_mask(MPU / mod / "test_boundary_label" / name, threshold=127, polarity="boundary")
            out[f"mpu_{mod}_img{i}"] = float(dice_score(np.ones(m.shape, np.float32), m))
    return out


# (start, colour, marker, legend) of the ExONE curves and (start, colour, legend) of the MPU-Net bars
LINES = (("default", "tab:blue", "o", "from the default"), ("scratch", "tab:orange", "s", "from scratch"),
         ("synthetic", "tab:green", "^", "from the synthetic pre-training"))
BARS = (("zero-shot", "grey", "default, zero-shot"), ("synthetic-zero-shot", "darkseagreen", "synthetic, zero-shot"),
        ("default", "tab:blue", "fine-tuned from the default"), ("scratch", "tab:orange", "trained from scratch"),
        ("synthetic", "tab:green", "fine-tuned from the synthetic pre-training"))


def plot(record: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = record["points"]
    metrics = [("dice", "Dice"), ("boundary_f1", "boundary F1 (2 px)"), ("abs_dG_planimetric", "|dG| planimetric"),
               ("abs_dG_intercept", "|dG| intercept")]
    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    zero = res.get("exone/zero-shot/N0")
    for ax, (key, label) in zip(axes[0], metrics):
        for init, colour, marker, text in LINES:
            ns = [n for n in NS if f"exone/{init}/N{n}" in res and res[f"exone/{init}/N{n}"].get(key) is not None]
            if ns:
                ax.plot([math.log2(n) for n in ns], [res[f"exone/{init}/N{n}"][key] for n in ns], marker=marker,
                        color=colour, label=text)
        if zero:
            ax.axhline(zero[key], color="grey", ls="--", label="default, no fine-tuning (N=0)")
        if key == "dice" and "all_grain_dice" in record:
            ax.axhline(record["all_grain_dice"]["exone_grouped_test_tiles"], color="black", ls=":",
                       label="all grain (no boundary at all)")
        ax.set_xticks([math.log2(n) for n in NS], [str(n) for n in NS])
        ax.set_xlim(-0.3, math.log2(NS[-1]) + 0.3)
        ax.set_xlabel("labelled ExONE source micrographs (12 tiles each)")
        ax.set_title(f"ExONE grouped test: {label}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    groups = [(m, i) for m, imgs in MPU_IMAGES.items() for i in range(len(imgs))]
    bars = [b for b in BARS if any(k.startswith("mpu/") and f"/{b[0]}/" in k for k in res)]
    width = 0.8 / max(1, len(bars))
    from matplotlib.patches import Patch

    for ax, (key, label) in zip(axes[1], metrics):
        for j, (init, colour, _) in enumerate(bars):
            xs, ys = [], []
            for g, (mod, i) in enumerate(groups):
                p = res.get(f"mpu/{mod}/{init}/test{i}")
                if p is not None and p.get(key) is not None:
                    xs.append(g + (j - (len(bars) - 1) / 2) * width)
                    ys.append(p[key])
            if xs:
                ax.bar(xs, ys, width, color=colour)
        if key == "dice" and "all_grain_dice" in record:
            ax.scatter(range(len(groups)), [record["all_grain_dice"][f"mpu_{m}_img{i}"] for m, i in groups],
                       marker="_", s=900, color="black", zorder=3)
            ax.set_ylim(0.5, 1.0)
        ax.set_xticks(range(len(groups)), [f"{m} img {i}\n(trained on {1 - i})" for m, i in groups], fontsize=8)
        ax.set_title(f"MPU-Net, held-out image: {label}")
        ax.grid(alpha=0.3, axis="y")
    handles = [Patch(color=c, label=t) for _, c, t in bars]
    if "all_grain_dice" in record:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", marker="_", ls="", markersize=14, label="all grain"))
    axes[1][0].legend(handles=handles, fontsize=8, loc="lower left")
    fig.suptitle(f"Learning curve, {EPOCHS * EPOCH_ITEMS // BATCH} steps per point (batch {BATCH}, {CROP} px crops), "
                 "vmunet_aspp_small", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(record: Dict[str, Any]) -> str:
    """The points as a markdown table (what docs/finetune.md shows)."""
    def f(v, spec=".3f"):
        return "" if v is None else format(v, spec)

    lines = ["| set | init | labelled | test | Dice | BF1 | \\|dG\\| plan. | \\|dG\\| int. | grains pred / true | "
             "steps (epochs) | train CPU min (wall) | eval CPU min (wall) |", "|" + "---|" * 12]
    for pid, p in sorted(record["points"].items(), key=lambda kv: (kv[1]["set"], kv[1].get("modality", ""),
                                                                   kv[1].get("test", ""), kv[1]["init"] != "zero-shot",
                                                                   kv[1]["init"], kv[1]["n"])):
        if p["set"] == "exone":
            what, labelled, test = "ExONE", f"{p['n']} source{'s' if p['n'] != 1 else ''}" + (
                f" ({p['n'] * 12} tiles)" if p["n"] else ""), "grouped test"
        else:
            what, labelled, test = f"MPU {p['modality']}", "1 image" if p["n"] else "0", f"img {pid[-1]}"
        lines.append(f"| {what} | {p['init']} | {labelled} | {test} | {f(p['dice'], '.4f')} | {f(p['boundary_f1'])} | "
                     f"{f(p['abs_dG_planimetric'])} | {f(p['abs_dG_intercept'])} | {p['grains_pred']} / {p['grains_true']} | "
                     f"{p['steps']} ({p['epochs']}) | {p['train_cpu_s'] / 60:.1f} ({p['train_wall_s'] / 60:.1f}) | "
                     f"{p['eval_cpu_s'] / 60:.1f} ({p['eval_wall_s'] / 60:.1f}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results" / "learning_curve.json"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "learning_curve"), help="training runs and data folders")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "learning_curve.png"))
    ap.add_argument("--only", default="exone,mpu", help="which sets to run")
    ap.add_argument("--points", default="", help="comma-separated point ids (default: all planned)")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the plot from the JSON")
    ap.add_argument("--table", action="store_true", help="only print the JSON's points as a markdown table")
    ap.add_argument("--synthetic", default=str(SYNTHETIC_DEFAULT),
                    help="folder of a synthetic-pretrained model: adds the 'synthetic' start when it exists")
    args = ap.parse_args()
    if (Path(args.synthetic) / "config.json").is_file():
        add_synthetic_init(Path(args.synthetic).resolve())
    out, runs = Path(args.out), Path(args.runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(out.read_text()) if out.is_file() else {}
    record.setdefault("protocol", {
        "batch": BATCH, "crop": CROP, "epoch_items": EPOCH_ITEMS, "epochs": EPOCHS,
        "steps_per_point": EPOCHS * EPOCH_ITEMS // BATCH, "input_size": INPUT, "seed": SEED, "draw_seed": DRAW_SEED,
        "inits": {k: v + COMMON for k, v in INITS.items()}, "exone_draw": exone_draw(),
        "exone_val": "row 2 of each grouped val source (16 tiles)",
        "exone_test": "4 grouped test micrographs stitched (|dG|), their 48 tiles cut from the same prediction (Dice, BF1)",
        "mpu": "train on one image of a modality (validated on itself), test on the other, polarity boundary",
        "instances": "watershed (package defaults)"})
    for name, cmd in INITS.items():  # a start added after the first run (synthetic) is recorded too
        record["protocol"]["inits"].setdefault(name, cmd + COMMON)
    record.setdefault("points", {})
    record.setdefault("machines", [])
    if "all_grain_dice" not in record:
        record["all_grain_dice"] = all_grain_dice()
    if args.table:
        print(table(record))
        return
    if not args.plot_only:
        record["machines"].append(run_machine())
        wanted = set(filter(None, args.points.split(",")))
        sets = set(args.only.split(","))
        for point in planned_points():
            pid = point["id"]
            if pid in record["points"] or point["set"] not in sets or (wanted and pid not in wanted):
                continue
            print(f"== {pid}", flush=True)
            if point["init"].endswith("zero-shot"):
                entry: Dict[str, Any] = {**point, "train_wall_s": 0.0, "train_cpu_s": 0.0, "steps": 0, "epochs": 0}
                entry.update(evaluate_point(point, None if point["init"] == "zero-shot" else INITS["synthetic"][2]))
            else:
                run = runs / pid.replace("/", "_")
                timing = train_point(point, run)
                entry = {**point, **timing}
                entry.update(evaluate_point(point, str(run / "train" / "best")))
            store_point(record, out, pid, entry)
            plot(record, Path(args.plot))
    write_json(out, record, indent=2)
    plot(record, Path(args.plot))
    print(f"-> {out}, {args.plot}", flush=True)


if __name__ == "__main__":
    main()
