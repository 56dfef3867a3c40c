"""``grainseg validate --model M --data DIR [--split S --subset test] [--out DIR]``.

Measures a model's grain sizes against hand-drawn masks: per image (tiles named ``<stem>_<r>_<c>`` are
stitched back into whole micrographs), Dice, boundary F1, adapted Rand error, variation of information,
true and predicted grain counts, ASTM E112 G planimetric and intercept with dG for each; then mean |dG|
and bias.  Writes ``validation.json``, ``validation.csv`` and one ``<image>_panel.png`` per image (image,
truth, prediction, error map) into ``--out``; never replaces files without ``--overwrite``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grainseg.cli._grain_args import (add_instance_args, add_rescale_arg, add_tta_arg, instance_kwargs, rescale_value,
                                      subset_of_split)

PROG = "grainseg validate"
#: How to use the card record validation.json carries.
CARD_HOW = ("if these images were held out of the model's training and of its checkpoint selection, copy this "
            "block into the model folder's config.json as \"grain_size_validation\", with a \"material\" entry "
            "naming what the images show: predict and analyze then widen every G interval by its rms_dG")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``validate`` on the dispatcher's sub-parsers."""
    p = subparsers.add_parser("validate", help="measure grain sizes against hand-drawn masks (dG, Dice, ARE, VI)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, metavar="NAME|HUB_ID|DIR", help="model to validate (default: the embedded one)")
    p.add_argument("--data", required=True, help="labelled folder: RG/ + RGMask/ (ExONE) or images/ + masks/")
    p.add_argument("--split", default=None, help="split in DATA/splits.json (default: every image)")
    p.add_argument("--subset", default=None, choices=["train", "val", "test"], help="subset of --split (default: test)")
    p.add_argument("--splits-file", default=None, help="splits.json to use instead of DATA/splits.json")
    p.add_argument("--stitch", choices=["auto", "never"], default="auto",
                   help="auto: complete <stem>_<r>_<c> tile grids are measured as one micrograph")
    p.add_argument("--polarity", choices=["grain", "boundary"], default="grain",
                   help="what the bright pixels of the mask files are")
    p.add_argument("--mask-threshold", type=float, default=127,
                   help="mask binarisation threshold on the 8-bit scale, 0-255, whatever the file depth (default: 127)")
    p.add_argument("--scale", type=float, default=None, metavar="UM_PER_PX",
                   help="micrometres per pixel (labels G; dG does not depend on it)")
    p.add_argument("--out", default="grainseg_validation", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-panels", action="store_true", help="do not write the PNG panels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    add_instance_args(p)
    add_tta_arg(p)
    add_rescale_arg(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``grainseg validate``; user errors raise (the dispatcher prints one line, exit 2)."""
    import math

    from grainseg.cli.predict import _check_out_dir, _device
    from grainseg.inference.predict import load_model
    from grainseg.inference.tta import record_tta
    from grainseg.inference.validate import card_record, collect_labelled, format_validation, validate, write_outputs

    args.subset = subset_of_split(args.subset, args.split, "validated")
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        raise ValueError(f"--scale must be a positive, finite number of micrometres per pixel, got {args.scale}")
    grain_kw = instance_kwargs(args)
    rescale = rescale_value(args)
    device = _device(args.device)
    items = collect_labelled(args.data, args.split, args.subset, splits_file=args.splits_file, stitch=args.stitch)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    problem = _check_out_dir(out)
    if problem:
        raise PermissionError(problem)
    if (out / "validation.json").exists() and not args.overwrite:
        raise FileExistsError(f"{out / 'validation.json'} already exists; pass --overwrite or another --out")
    model, info = load_model(args.model, device=device)
    info = record_tta(info, args.tta)
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = validate(model, items, scale=args.scale, polarity=args.polarity, mask_threshold=args.mask_threshold,
                      grain_kw=grain_kw, device=device, progress=say, keep_maps=not args.no_panels,
                      tta=args.tta, rescale=rescale)
    meta = {"model": info, "data": str(Path(args.data).resolve()), "split": args.split, "subset": args.subset,
            "stitch": args.stitch, "rescale": args.rescale}
    where = meta["data"] + ("" if args.split is None else f" (split {args.split}, subset {args.subset})")
    record = card_record(result["summary"], where)
    if record is not None:
        meta["grain_size_validation"] = {**record, "settings": {"instances": result["instances"],
                                                                "rescale": args.rescale, "tta": args.tta},
                                         "how": CARD_HOW}
    write_outputs(result, out, overwrite=args.overwrite, meta=meta)
    print(format_validation(result))
    for r in result["rows"]:
        for w in r["warnings"]:
            print(f"{PROG}: warning: {r['image']}: {w}", file=sys.stderr)
    if record is not None:
        print(f"rms dG planimetric {record['rms_dG']['planimetric']:.3f}, intercept "
              f"{record['rms_dG']['intercept']:.3f}: 'grain_size_validation' in validation.json is the record a "
              "model card takes (see its 'how')")
    print(f"-> {out / 'validation.json'}, {out / 'validation.csv'}" + ("" if args.no_panels else ", panels"))
    return 0
