"""How far apart are models from each other, against how far each is from the hand-drawn masks?

If independently trained models agree with each other much better than any agrees with the labels,
the remaining error is shared: what every model does differently from the annotator (label style,
ambiguous etched bands), which more training of the same kind will not remove.  Per test tile: Dice
and boundary F1 (2 px) of each model against the mask, and of each pair of models against each other
(both metrics are symmetric in their two arguments), boundary F1 at one or more tolerances.

    python benchmarks/model_agreement.py --models default,runs/a/best,runs/b/best [--split grouped --subset test]
        [--out benchmarks/results/model_agreement.json]
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info, write_json  # noqa: E402

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))


def centreline_f1(band_a: np.ndarray, band_b: np.ndarray, tolerance: float) -> float:
    """F1 of the boundary bands' centrelines (skeletons) matched within ``tolerance`` px: where the
    boundary runs, independent of how wide each side draws its band."""
    from skimage.morphology import skeletonize

    from grainseg.train.metrics import matched_f1

    return matched_f1(skeletonize(band_a), skeletonize(band_b), tolerance)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated model ids / directories; 'default' = embedded")
    ap.add_argument("--split", default="grouped")
    ap.add_argument("--subset", default="test")
    ap.add_argument("--tolerances", default="2", help="comma-separated boundary F1 tolerances in px")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from grainseg.data.datasets import SegmentationDataset
    from grainseg.inference import predict_proba
    from grainseg.inference.predict import load_model
    from grainseg.train.metrics import boundary_f1, dice_score

    names = args.models.split(",")
    tols = [float(t) for t in args.tolerances.split(",")]
    keys = ["dice"] + [f"boundary_f1@{t:g}" for t in tols] + [f"centreline_f1@{t:g}" for t in tols]
    models = [load_model(None if n == "default" else n)[0] for n in names]
    ds = SegmentationDataset(SHARED / "data" / "exone316l", args.split, args.subset, in_chans=3)
    vs_label = {n: {k: [] for k in keys} for n in names}
    pairs = list(itertools.combinations(range(len(names)), 2))
    vs_model = {f"{names[i]} | {names[j]}": {k: [] for k in keys} for i, j in pairs}
    for t in range(len(ds)):
        image, mask = ds.read_raw(t)
        probs = [predict_proba(m, image) for m in models]
        for n, p in zip(names, probs):
            vs_label[n]["dice"].append(dice_score(p, mask))
            for t in tols:
                vs_label[n][f"boundary_f1@{t:g}"].append(boundary_f1(p, mask, t))
                vs_label[n][f"centreline_f1@{t:g}"].append(centreline_f1(p <= 0.5, mask == 0, t))
        for i, j in pairs:
            other = (probs[j] > 0.5).astype(np.float32)
            pair = vs_model[f"{names[i]} | {names[j]}"]
            pair["dice"].append(dice_score(probs[i], other))
            for t in tols:
                pair[f"boundary_f1@{t:g}"].append(boundary_f1(probs[i], other, t))
                pair[f"centreline_f1@{t:g}"].append(centreline_f1(probs[i] <= 0.5, probs[j] <= 0.5, t))
    mean = lambda d: {k: float(np.mean(v)) for k, v in d.items()}  # noqa: E731
    res = {"model_vs_label": {n: mean(v) for n, v in vs_label.items()},
           "model_vs_model": {n: mean(v) for n, v in vs_model.items()}}
    print(f"{args.split} {args.subset}, {len(ds)} tiles, at the tiles' resolution")
    def line(r):
        return (f"Dice {r['dice']:.4f}  " + "  ".join(f"BF1@{t:g}px {r[f'boundary_f1@{t:g}']:.3f}" for t in tols)
                + "  centreline " + "  ".join(f"@{t:g}px {r[f'centreline_f1@{t:g}']:.3f}" for t in tols))

    for n, r in res["model_vs_label"].items():
        print(f"  {n} vs label: {line(r)}")
    for n, r in res["model_vs_model"].items():
        print(f"  {n}: {line(r)}")
    if args.out:
        write_json(Path(args.out), {"models": names, "split": args.split, "subset": args.subset,
                                    "machine": machine_info("cpu"), **res,
                                    "per_tile": {"names": ds.names, "vs_label": vs_label, "vs_model": vs_model}},
                   indent=2)


if __name__ == "__main__":
    main()
