"""``grainseg train``: train a registered model on an image / mask folder with fixed splits.

``--init MODEL_ID_OR_DIR`` starts from saved weights (fine-tuning; ``grainseg finetune`` is this
with small-data defaults, see docs/finetune.md).

Example (the paper's protocol)::

    grainseg train --model vmunet_aspp --data ../shared/data/exone316l --split paper --epochs 20 \\
        --batch-size 1 --lr 1e-4 --loss bce --patience 4 --out runs/vmunet_aspp_paper

Data-parallel: ``torchrun --nproc_per_node 2 -m grainseg train ...`` (``--batch-size`` is per process).
"""
from __future__ import annotations

import argparse
import json
from typing import List, Optional


def _size(text: str) -> List[int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 256 or 256x256, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 256 or 256x256, got {text!r}")
    return vals


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--model-kwargs must be a JSON object: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--model-kwargs must be a JSON object like '{\"dims\": 32}'")
    return value


#: The bundled default model, where ``grainseg finetune`` starts unless ``--init`` says otherwise.
DEFAULT_INIT = "grainseg/vmunet-aspp-small-exone316l"
#: ``grainseg finetune``'s defaults (small data, a pretrained start); everything else as ``train``.
FINETUNE_DEFAULTS = dict(init=DEFAULT_INIT, split="auto", val_fraction=0.2, lr=1e-4, schedule="cosine",
                         epochs=30, patience=10, batch_size=2, crop_size=[128, 128], freeze_encoder_epochs=2,
                         epoch_items=64, boundary_grow="auto")

FINETUNE_DOC = """``grainseg finetune``: adapt a pretrained model to a handful of your own labelled micrographs.

``grainseg train`` with small-data defaults: starts from --init (default: the bundled
grainseg/vmunet-aspp-small-exone316l), --lr 1e-4 with a cosine schedule over --epochs 30, the encoder
frozen for the first 2 epochs (--freeze-encoder-epochs), random 128x128 crops of the resized images,
at least 64 of them an epoch (--epoch-items: a few images are each drawn several times, every draw its
own crop), the masks' boundary lines widened to the band width the --init model learnt (--boundary-grow
auto), the usual flips / rotations / brightness-contrast, and 20 % of the images (at least one) held out for
validation when DATA/splits.json does not exist (--val-fraction, seeded by --split-seed).

Example (images/ + masks/ with the same file stems; white boundary lines on black)::

    grainseg finetune --data my_micrographs --polarity boundary --out runs/my_finetune

See docs/finetune.md.
"""


def _add_arguments(p: argparse.ArgumentParser, finetune: bool) -> None:
    d = dict(FINETUNE_DEFAULTS) if finetune else {}
    p.add_argument("--model", default=None,
                   help="registered model name (grainseg models); default vmunet_aspp, or with --init the "
                        "architecture of the --init model")
    p.add_argument("--init", default=d.get("init"), metavar="MODEL_ID_OR_DIR",
                   help="start from these weights: a registered pretrained id, a Hub id or a folder saved by "
                        "save_pretrained (e.g. a run's best/)" + (f" (default {DEFAULT_INIT})" if finetune else ""))
    p.add_argument("--data", required=True,
                   help="data folder: RG/ + RGMask/ (ExONE) or images/ + masks/; or synthetic:N[:HxW] for N "
                        "domain-randomised synthetic micrographs")
    p.add_argument("--split", default=d.get("split", "paper"),
                   help="split name in DATA/splits.json; 'none' uses all images (with --val-fraction, a held-out "
                        "part validates); 'auto' the splits.json's only split if it exists, else 'none'")
    p.add_argument("--splits-file", default=None, help="splits.json to use instead of DATA/splits.json")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="without a split: hold out this fraction of the images (at least 1) for validation"
                        + (" (default 0.2 when --split is auto and finds no splits.json, or none)" if finetune
                           else " (default: validate on the training images)"))
    p.set_defaults(default_val_fraction=d.get("val_fraction"))
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --val-fraction hold-out")
    p.add_argument("--out", required=True, help="run directory (best/, metrics.json, checkpoint.pt)")
    p.add_argument("--epochs", type=int, default=d.get("epochs", 20))
    p.add_argument("--batch-size", type=int, default=d.get("batch_size", 1),
                   help="images per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=d.get("lr", 1e-4), help="Adam learning rate")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=d.get("schedule", "constant"),
                   help="learning rate: constant (the paper's) or cosine decay to 0 over --epochs")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up before the cosine decay")
    p.add_argument("--freeze-encoder-epochs", type=int, default=d.get("freeze_encoder_epochs", 0), metavar="N",
                   help="freeze the encoder for the first N epochs (the decoder adapts first)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--loss", default="bce", choices=["bce", "dice", "dicece", "boundary-bce"],
                   help="boundary-bce: BCE weighted up to 5x on a 3 px band around the boundaries")
    p.add_argument("--patience", type=int, default=d.get("patience", 4),
                   help="early stopping: epochs without val-loss improvement (0: off)")
    p.add_argument("--select-on", choices=["val_loss", "val_dice", "val_boundary_f1"], default="val_loss",
                   help="what picks best/ and drives early stopping (loss: lower is better; the others higher)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="disable flips / rotations / brightness-contrast")
    p.add_argument("--augment-extra", default="", metavar="NAMES",
                   help="extra robustness augmentations, comma-separated: scale, elastic, invert, grey, colour, "
                        "gamma, blur, noise, jpeg (or all); off by default")
    p.add_argument("--crop-size", type=_size, default=d.get("crop_size"),
                   help="train on random HxW crops of the resized images (validation uses full images)")
    p.add_argument("--epoch-items", type=int, default=d.get("epoch_items", 0), metavar="N",
                   help="at least N training items per epoch: fewer images are each drawn several times an epoch, "
                        "every draw with its own augmentation and crop (0: each image once)"
                        + (f"; default {d['epoch_items']}" if "epoch_items" in d else ""))
    p.add_argument("--boundary-grow", type=_grow, default=d.get("boundary_grow", 0), metavar="PX|auto",
                   help="widen every mask's boundaries by PX pixels of the network input on each side before "
                        "training (and validation): for labels drawn with thinner lines than the --init model "
                        "learnt (the bundled default: bands about 9 px wide at its 352 px input); auto: to the "
                        "--init model's band width; 0: as drawn"
                        + (f"; default {d['boundary_grow']}" if "boundary_grow" in d else ""))
    p.add_argument("--input-size", type=_size, default=None, help="override the model's input size (default 256x256)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="mixed precision: float16 autocast on CUDA (auto: on), bfloat16 autocast on the CPU "
                        "(only with 'on'; about 1.4x faster a step with AVX-512, much slower on CPUs without it: "
                        "see docs/kernels.md)")
    p.add_argument("--loop-adam", action="store_true",
                   help="torch's per-parameter Adam instead of the fused one (same update up to rounding)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (for --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")
    p.add_argument("--polarity", choices=["grain", "boundary"], default="grain",
                   help="what the bright pixels of the mask files are (the model always predicts grain interior)")
    p.add_argument("--threshold", type=float, default=127,
                   help="mask binarisation threshold on the 8-bit scale, 0-255, whatever the file depth (default: 127)")
    p.add_argument("--model-kwargs", type=_json_dict, default={}, help="JSON overrides of the model preset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model on micrographs and masks",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p, finetune=False)
    f = subparsers.add_parser("finetune", help="fine-tune a pretrained model on a few labelled micrographs",
                              description=FINETUNE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(f, finetune=True)
    from grainseg.cli import _add_common_options

    _add_common_options("train", f)  # --max-pixels, as train (registered by the caller for "train" only)
    return p


def _grow(text: str):
    """--boundary-grow: 'auto' or pixels (an int >= 0)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        px = int(text)
    except ValueError:
        px = -1
    if px < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or pixels (an int >= 0), got {text!r}")
    return px


def _val_fraction(args: argparse.Namespace):
    """--val-fraction, else finetune's default hold-out, which applies only where no named split is asked
    for (an explicit --split brings its own val list)."""
    if args.val_fraction is not None or args.default_val_fraction is None:
        return args.val_fraction
    return args.default_val_fraction if str(args.split).lower() in ("auto", "none") else None


def run(args: argparse.Namespace) -> int:
    from grainseg.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, out=args.out, model=args.model,
        split=None if str(args.split).lower() == "none" else args.split, splits_file=args.splits_file,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        loss=args.loss, schedule=args.schedule, warmup_epochs=args.warmup_epochs, patience=args.patience, seed=args.seed, augment=not args.no_augment,
        crop_size=args.crop_size, input_size=args.input_size, amp=args.amp, device=args.device,
        num_workers=args.num_workers, checkpoint_every=args.checkpoint_every, resume=args.resume,
        polarity=args.polarity, threshold=args.threshold, model_kwargs=args.model_kwargs,
        progress=not args.no_progress, init=args.init, freeze_encoder_epochs=args.freeze_encoder_epochs,
        val_fraction=_val_fraction(args), split_seed=args.split_seed, augment_extra=args.augment_extra,
        select_on=args.select_on, fused_adam=not args.loop_adam, epoch_items=args.epoch_items,
        boundary_grow=args.boundary_grow,
    )
    summary = train(cfg)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best epoch {summary['best_epoch']} (val loss {summary['best_val_loss']:.4f}); "
              f"model saved in {summary['best_dir']}")
    return 0
