"""Where does a model draw boundaries the annotator did not (``--kind extra``), or miss drawn ones
(``--kind missed``)?  Crops of one stitched micrograph around the largest clusters of such boundary
pixels, each beside a copy with the other side's boundaries and the mismatch: for ``extra`` the drawn
boundaries in green and the predicted ones more than 3 px from any drawn one in magenta; for ``missed``
the predicted boundaries in red and the drawn ones more than 3 px from any predicted one in green.

    python benchmarks/extra_boundaries_panel.py --image RG37 [--kind extra] [--subset test] [--model M]
        [--out docs/img/rg37_model_only_boundaries.jpg]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parents[1] / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="RG37", help="stitched micrograph name (grouped split)")
    ap.add_argument("--subset", default="test")
    ap.add_argument("--model", default=None)
    ap.add_argument("--kind", default="extra", choices=("extra", "missed"))
    ap.add_argument("--crops", type=int, default=6)
    ap.add_argument("--size", type=int, default=150, help="crop side in px")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "img" / "rg37_model_only_boundaries.jpg"))
    args = ap.parse_args()
    from PIL import Image
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    from grainseg.inference.predict import load_model
    from grainseg.inference.validate import collect_labelled, validate

    model, _ = load_model(args.model)
    items = [i for i in collect_labelled(SHARED / "data" / "exone316l", "grouped", args.subset) if i.name == args.image]
    if not items:
        raise SystemExit(f"no stitched micrograph {args.image!r} in grouped {args.subset}")
    res = validate(model, items, keep_maps=True)  # the package's own prediction and truth tessellations
    maps, row = res["maps"][0], res["rows"][0]
    image, truth, grains = maps["image"], maps["truth"], maps["pred"]
    tb, pb = find_boundaries(truth, mode="inner"), find_boundaries(grains, mode="inner")
    img = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    drawn = img.copy()
    if args.kind == "extra":
        extra = pb & ~ndi.binary_dilation(tb, iterations=3)
        drawn[tb], drawn[extra] = (0, 200, 0), (255, 0, 255)
    else:
        extra = tb & ~ndi.binary_dilation(pb, iterations=3)
        drawn[pb], drawn[extra] = (255, 40, 40), (0, 220, 0)
    lab, n = ndi.label(ndi.binary_dilation(extra, iterations=2))
    sizes = ndi.sum(extra, lab, range(1, n + 1))
    boxes = ndi.find_objects(lab)
    s = args.size
    crops = []
    for k in np.argsort(sizes)[::-1][:args.crops]:
        box = boxes[k]
        y0 = int(np.clip((box[0].start + box[0].stop) // 2 - s // 2, 0, img.shape[0] - s))
        x0 = int(np.clip((box[1].start + box[1].stop) // 2 - s // 2, 0, img.shape[1] - s))
        crops.append(np.concatenate([img[y0:y0 + s, x0:x0 + s], drawn[y0:y0 + s, x0:x0 + s]], 1))
    if len(crops) > 3:
        crops = crops[:len(crops) - len(crops) % 3]  # full rows of three
    rows = [np.concatenate(crops[i:i + 3], 1) for i in range(0, len(crops), 3)]
    Image.fromarray(np.concatenate(rows, 0).astype(np.uint8)).save(args.out, quality=90)
    print(f"{args.image}: {row['grains_pred']} grains predicted, {row['grains_true']} drawn; {int(extra.sum())} "
          f"{'model-only' if args.kind == 'extra' else 'missed drawn'} boundary px -> {args.out}")


if __name__ == "__main__":
    main()
