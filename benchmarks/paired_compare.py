"""Paired per-image comparison of two `grainseg evaluate` JSONs of the same test images.

A difference in mean Dice between two models means little without its spread over the test images.
This pairs the images by name and reports the mean difference per metric, a bootstrap 95 % interval over
images and how many images each model wins. It measures test-set sampling noise only; seed-to-seed
noise needs runs with other seeds.

    python benchmarks/paired_compare.py A.json B.json [--metrics dice,iou,boundary_f1] [--out X.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def paired(a: dict, b: dict, metrics: list[str], n_boot: int = 10000, seed: int = 0) -> dict:
    """Per-metric mean of (b - a) over images present in both, with a percentile bootstrap interval."""
    ia = {r["name"]: r for r in a["per_image"]}
    ib = {r["name"]: r for r in b["per_image"]}
    names = sorted(set(ia) & set(ib))
    if not names:
        raise ValueError("the two evaluations share no image names; were they run on the same split and subset?")
    if len(names) != len(ia) or len(names) != len(ib):
        raise ValueError(f"the evaluations hold different images ({len(ia)} and {len(ib)}, {len(names)} shared)")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(names), size=(n_boot, len(names)))
    out = {"images": len(names), "metrics": {}}
    for m in metrics:
        d = np.array([ib[n][m] - ia[n][m] for n in names], dtype=np.float64)
        boots = d[idx].mean(axis=1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        out["metrics"][m] = {"a": float(np.mean([ia[n][m] for n in names])),
                             "b": float(np.mean([ib[n][m] for n in names])),
                             "mean_diff": float(d.mean()), "sd_diff": float(d.std(ddof=1)),
                             "ci95": [float(lo), float(hi)], "b_wins": int((d > 0).sum()), "a_wins": int((d < 0).sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="evaluation JSON of model A")
    p.add_argument("b", type=Path, help="evaluation JSON of model B (differences are B - A)")
    p.add_argument("--metrics", default="dice,iou,boundary_f1")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    a, b = (json.loads(x.read_text()) for x in (args.a, args.b))
    res = {"a": str(args.a), "b": str(args.b), **paired(a, b, args.metrics.split(","))}
    print(f"B - A over {res['images']} paired images  (A = {args.a.name}, B = {args.b.name})")
    for m, r in res["metrics"].items():
        print(f"  {m:12s} A {r['a']:.4f}  B {r['b']:.4f}  diff {r['mean_diff']:+.4f} (95% CI {r['ci95'][0]:+.4f}"
              f" .. {r['ci95'][1]:+.4f}, sd {r['sd_diff']:.4f})  B wins {r['b_wins']}, A wins {r['a_wins']}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
