"""Instance parameters of the watershed grain method, selected on ExONE `grouped` val for one model.

    python benchmarks/instance_sweep.py [--model M] [--out benchmarks/results/instance_sweep_default.json]

The model's probability maps of the 4 stitched val and 4 stitched test micrographs are computed once;
then every (core, sigma, merge) of the grid is measured as `grainseg validate` measures it: planimetric
and Heyn intercept G of the watershed grains against the connected interiors of the hand-drawn masks
(the same :func:`grainseg.grains.astm` procedures with their defaults, as `GrainReport`).  The setting with the lowest
mean of the two val |dG| is selected; test and all 8 are reported beside it, never used to choose.

``merge`` is a lever tried here, not a package option: after the watershed, two adjacent grains are merged
when the mean smoothed grain probability along their shared border exceeds it (the model itself says
"no boundary there"), which should undo a grain split between two cores.  ``none`` leaves the watershed.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info  # noqa: E402  (CPU model, flags, torch, commit, date)
from grain_size_validation import SHARED, write_record  # noqa: E402


def merge_weak_borders(grains: np.ndarray, smooth: np.ndarray, threshold: float) -> np.ndarray:
    """Relabel ``grains`` with every pair of 4-adjacent grains merged whose border mean of ``smooth`` > threshold."""
    a = np.concatenate([grains[:, :-1].ravel(), grains[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([grains[:, 1:].ravel(), grains[1:, :].ravel()]).astype(np.int64)
    v = np.concatenate([((smooth[:, :-1] + smooth[:, 1:]) / 2).ravel(), ((smooth[:-1, :] + smooth[1:, :]) / 2).ravel()])
    on = (a != b) & (a > 0) & (b > 0)
    n = int(grains.max()) + 1
    key = np.minimum(a[on], b[on]) * n + np.maximum(a[on], b[on])
    pairs, inv = np.unique(key, return_inverse=True)
    mean = np.bincount(inv, weights=v[on]) / np.bincount(inv)
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs[mean > threshold]:
        ra, rb = root(int(p // n)), root(int(p % n))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1].reshape(-1)[grains].astype(np.int32)


def grain_sizes(grains: np.ndarray) -> Tuple[Optional[float], Optional[float]]:
    """(G planimetric, G intercept) as GrainReport computes them (scale 1: dG does not depend on it)."""
    from grainseg.grains.astm import intercept, planimetric

    return planimetric(grains, 1.0)["G"], intercept(grains, 1.0)["G"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--cores", default="0.7,0.8,0.9")
    ap.add_argument("--sigmas", default="1,2")
    ap.add_argument("--merges", default="none,0.5,0.6,0.7")
    ap.add_argument("--out", default=str(HERE / "results" / "instance_sweep_default.json"))
    args = ap.parse_args()
    from scipy.ndimage import gaussian_filter

    from grainseg.grains.instances import DEFAULT_INSTANCE_PARAMS, segment_grains
    from grainseg.grains.stats import label_interiors, tessellate_grains
    from grainseg.inference.predict import load_model, predict_proba
    from grainseg.inference.validate import collect_labelled

    model, info = load_model(args.model)
    data = SHARED / "data" / "exone316l"
    min_area = int(DEFAULT_INSTANCE_PARAMS["min_grain_area"])
    maps: Dict[str, Tuple[np.ndarray, Tuple]] = {}
    t = time.perf_counter()
    for subset in ("val", "test"):
        for item in collect_labelled(data, "grouped", subset):
            image, mask = item.load("grain")
            truth = tessellate_grains(label_interiors(mask > 0, min_area=min_area))
            maps[f"{subset}/{item.name}"] = (predict_proba(model, image), grain_sizes(truth))
    record = {"model": info, "machine": machine_info("cpu"), "predict_seconds": round(time.perf_counter() - t, 1),
              "defaults": DEFAULT_INSTANCE_PARAMS, "settings": []}
    grid = itertools.product([float(c) for c in args.cores.split(",")], [float(s) for s in args.sigmas.split(",")],
                             [None if m == "none" else float(m) for m in args.merges.split(",")])
    for core, sigma, merge in grid:
        rows = {}
        for name, (prob, (gp_true, gi_true)) in maps.items():
            _, grains = segment_grains(prob, "watershed", core=core, sigma=sigma, min_grain_area=min_area)
            if merge is not None:
                grains = merge_weak_borders(grains, gaussian_filter(prob, sigma) if sigma > 0 else prob, merge)
            gp, gi = grain_sizes(grains)
            rows[name] = {"grains": int(len(np.unique(grains[grains > 0]))), "dG_planimetric": gp - gp_true,
                          "dG_intercept": gi - gi_true}
        entry = {"core": core, "sigma": sigma, "merge": merge, "images": rows}
        for subset in ("val", "test", "all"):
            sel = [r for k, r in rows.items() if subset == "all" or k.startswith(subset + "/")]
            for key in ("planimetric", "intercept"):
                d = np.array([r[f"dG_{key}"] for r in sel])
                entry[f"{subset}_abs_dG_{key}"] = float(np.abs(d).mean())
                entry[f"{subset}_bias_dG_{key}"] = float(d.mean())
        record["settings"].append(entry)
        print(f"core {core} sigma {sigma} merge {merge}: " + "  ".join(
            f"{s} {entry[f'{s}_abs_dG_planimetric']:.3f}/{entry[f'{s}_abs_dG_intercept']:.3f}" for s in ("val", "test", "all")),
            flush=True)
    best = min(record["settings"], key=lambda e: e["val_abs_dG_planimetric"] + e["val_abs_dG_intercept"])
    record["selected_on_val"] = {k: best[k] for k in best if k != "images"}
    print("selected on val:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record["selected_on_val"].items()})
    write_record(args.out, record)


if __name__ == "__main__":
    main()
