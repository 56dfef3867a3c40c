"""Thin labels on the model's own material: does fine-tuning on thinly drawn boundary lines hurt the grain
size, and does ``--boundary-grow auto`` (``grainseg finetune``'s default) prevent it?

    python benchmarks/thin_labels.py [--out benchmarks/results/thin_labels.json] [--runs runs/thin_labels]
        [--recipes thin-0,thin-auto,drawn] [--cases A0,B0,A1] [--table]

The MPU-Net check (``mpu_finetune.py``) has two images per modality.  Here the question is asked where the
answer can be measured well: ExONE 316L, whose 4 stitched ``grouped`` test micrographs (1200 x 1600, about
160 grains each) have true G from hand-drawn masks.  A lab that draws boundaries with a thin pen is
simulated by thinning one ``grouped`` val tile's mask (400 px; its ~9 px bands are skeletonised and
dilated by a 3 x 3 square: 3 px lines, about 2.6 px at the model's 352 px input).  From the bundled
default, ``grainseg finetune`` (its defaults: 30 epochs of 64 items, 960 steps) trains on that one tile
(validating on itself) and the grains of the 4 test micrographs are measured (watershed, package
defaults; ``learning_curve.evaluate_point``):

- ``thin-0``: the thinned mask as drawn (``--boundary-grow 0``);
- ``thin-auto``: the thinned mask widened to the default's learnt band width (``--boundary-grow auto``);
- ``drawn``: the tile's own ~9 px mask (``auto`` picks 0 there; a control for what one tile does at all).

Cases: ``A0`` tile RG7_2_2 seed 0, ``A1`` the same tile seed 1, ``B0`` tile RG17_2_2 seed 0 (another
val micrograph).  ``zero-shot`` is the bundled model without fine-tuning.  Resumable like the others.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import learning_curve as lc  # noqa: E402

TILES = {"A": "RG7_2_2", "B": "RG17_2_2"}
CASES = {"A0": ("A", 0), "A1": ("A", 1), "B0": ("B", 0)}
RECIPES: Dict[str, List[str]] = {
    "thin-0": ["--boundary-grow", "0"],
    "thin-auto": ["--boundary-grow", "auto"],
    "drawn": ["--boundary-grow", "0"],
}


def thin_mask(mask: np.ndarray, pad: int = 16) -> np.ndarray:
    """A {0, 1} grain-interior mask with its boundary bands replaced by 3 px lines (skeleton, 3 x 3 dilation).

    The bands are extended beyond the border (edge padding) before skeletonising: a skeleton stops about half
    a band width short of the end of a band, which would open a gap at the border and merge the grains on
    either side."""
    from scipy.ndimage import binary_dilation
    from skimage.morphology import skeletonize

    band = np.pad(mask == 0, pad, mode="edge")
    lines = binary_dilation(skeletonize(band), structure=np.ones((3, 3), bool))[pad:-pad, pad:-pad]
    return (~lines).astype(np.uint8)


def build(point: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """images/ + masks/ holding the one tile, its mask as drawn or thinned."""
    import shutil

    from PIL import Image

    from grainseg.data.io import read_mask
    from grainseg.data.transforms import boundary_width

    if folder.exists():
        shutil.rmtree(folder)
    tile = point["tile"]
    lc._link(folder / "images" / f"{tile}.jpg", lc.EXONE / "RG" / f"{tile}.jpg")
    mask = read_mask(lc.EXONE / "RGMask" / f"RGMask{tile[2:]}.jpg")
    if point["recipe"].startswith("thin"):
        mask = thin_mask(mask)
    (folder / "masks").mkdir(parents=True)
    Image.fromarray(mask * 255).save(folder / "masks" / f"{tile}.png")
    return {"train_image": tile, "train_images": 1, "repeats": 1, "train_items_per_epoch": 64,
            "val_images": [tile + " (itself)"], "mask_band_width_px_native": boundary_width([mask])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results" / "thin_labels.json"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "thin_labels"))
    ap.add_argument("--recipes", default="zero-shot," + ",".join(RECIPES))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--merge", default="", metavar="JSON,...", help="merge these outputs into --out, then stop")
    args = ap.parse_args()
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {}
    record.setdefault("protocol", {"tiles": TILES, "cases": CASES, "recipes": RECIPES,
                                   "test": "ExONE grouped test, 4 stitched micrographs, watershed (package defaults)"})
    record.setdefault("points", {})
    record.setdefault("machines", [])
    if args.merge:
        lc.merge_points(record, out, args.merge)
        return
    if args.table:
        print(table(record))
        return
    record["machines"].append(lc.run_machine())
    for recipe in args.recipes.split(","):
        for case in (["-"] if recipe == "zero-shot" else args.cases.split(",")):
            pid = "zero-shot" if recipe == "zero-shot" else f"{recipe}/{case}"
            if pid in record["points"]:
                continue
            print(f"== {pid}", flush=True)
            point: Dict[str, Any] = {"id": pid, "set": "exone", "init": "finetune", "recipe": recipe}
            if recipe == "zero-shot":
                entry = {**point, "init": "zero-shot", **lc.evaluate_point({**point, "init": "zero-shot"}, None)}
            else:
                tile_key, seed = CASES[case]
                point.update(tile=TILES[tile_key], seed=seed, case=case)
                run = Path(args.runs) / pid.replace("/", "_")
                command = ["finetune", "--no-progress", *RECIPES[recipe], "--seed", str(seed)]
                entry = {**point, **lc.train_point({**point, "set": "thin"}, run, command=command, build=build)}
                entry["boundary_grow_px"] = json.loads((run / "train" / "metrics.json").read_text()).get("boundary_grow_px")
                entry.update(lc.evaluate_point(point, str(run / "train" / "best")))
            lc.store_point(record, out, pid, entry)
    print(table(record))


def table(record: Dict[str, Any]) -> str:
    rows = ["| recipe | case | grow (px) | grains pred / true | \\|dG\\| plan. | \\|dG\\| int. | bias plan. / int. | "
            "tile Dice | tile BF1 |", "|---|---|---|---|---|---|---|---|---|"]
    for p in record["points"].values():
        rows.append(f"| {p['recipe'] if 'recipe' in p else p['id']} | {p.get('case', '-')} | {p.get('boundary_grow_px', '-')} "
                    f"| {p['grains_pred']} / {p['grains_true']} | {p['abs_dG_planimetric']:.3f} | "
                    f"{p['abs_dG_intercept']:.3f} | {p['bias_dG_planimetric']:+.3f} / {p['bias_dG_intercept']:+.3f} | "
                    f"{p['dice']:.4f} | {p['boundary_f1']:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
