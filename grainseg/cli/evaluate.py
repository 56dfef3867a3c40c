"""``grainseg evaluate``: per-image and mean metrics of a saved model on a data set split.

Example::

    grainseg evaluate --model runs/vmunet_aspp_paper/best --data ../shared/data/exone316l --split paper \\
        --subset test --json results/test_metrics.json

Images are predicted at their own resolution through ``grainseg.predict_proba`` (the model's recorded
preprocessing); Dice, IoU, precision, recall, boundary F1 (``--tolerance`` pixels) and HD95 are computed
per image with prediction and mask thresholded at 0.5, then averaged.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from grainseg._json import dumps
from grainseg.cli._grain_args import add_tta_arg, subset_of_split


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="metrics of a saved model on a data set split",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None,
                   help="directory saved by save_pretrained, a pretrained id or a Hub repo id (default: the embedded model)")
    p.add_argument("--data", required=True, help="data folder: RG/ + RGMask/ (ExONE) or images/ + masks/")
    p.add_argument("--split", default="paper", help="split name in DATA/splits.json; 'none' evaluates every image")
    p.add_argument("--subset", default=None, choices=["train", "val", "test"], help="subset of --split (default: test)")
    p.add_argument("--splits-file", default=None, help="splits.json to use instead of DATA/splits.json")
    p.add_argument("--json", dest="json_path", default=None,
                   help="where to write the JSON (default: evaluation_<split>_<subset>.json in the current directory)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON file")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for the prediction")
    p.add_argument("--tolerance", type=float, default=2.0, help="boundary F1 tolerance in pixels")
    p.add_argument("--polarity", choices=["grain", "boundary"], default="grain", help="what bright mask pixels are")
    p.add_argument("--mask-threshold", type=float, default=127,
                   help="mask binarisation threshold on the 8-bit scale, 0-255, whatever the file depth (default: 127)")
    add_tta_arg(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="print only the mean row")
    p.set_defaults(func=run)
    return p


def _check_writable(out: Path) -> None:
    """PermissionError / NotADirectoryError / IsADirectoryError naming ``--json`` when ``out`` cannot be written."""
    import tempfile

    if out.is_dir():
        raise IsADirectoryError(f"--json {out} is a folder; give a file path such as {out / 'evaluation.json'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise PermissionError(f"--json {out}: cannot write to {out.parent}: {err.strerror or err}") from None


def run(args: argparse.Namespace) -> int:

    from grainseg.data.datasets import SegmentationDataset
    from grainseg.devices import resolve_device
    from grainseg.inference import load_model
    from grainseg.inference.tta import record_tta
    from grainseg.train.evaluation import evaluate_model, format_table

    split = None if str(args.split).lower() == "none" else args.split
    args.subset = subset_of_split(args.subset, split, "evaluated")
    out = Path(args.json_path or f"evaluation_{split or 'all'}_{args.subset if split else 'images'}.json")
    _check_writable(out)  # before the evaluation, not after it
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it or choose another --json path")
    device = resolve_device(args.device or "auto", "--device")
    model, info = load_model(args.model, device=device)
    info = record_tta(info, args.tta)
    ds = SegmentationDataset(args.data, split, args.subset if split else None, splits_file=args.splits_file,
                             in_chans=int(getattr(model, "in_chans", 3)), threshold=args.mask_threshold,
                             polarity=args.polarity)
    result = evaluate_model(model, ds, threshold=args.threshold, tolerance=args.tolerance, device=device,
                            progress=not args.quiet, tta=args.tta)
    print(format_table(result, per_image=not args.quiet))
    record = {"model": info, "data": str(Path(args.data).resolve()), "split": split,
              "subset": args.subset if split else None, "threshold": args.threshold,
              "tolerance_px": args.tolerance, "device": device, **result}
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(dumps(record) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0
