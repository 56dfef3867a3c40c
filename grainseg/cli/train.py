"""``grainseg train``: train a registered model on an image / mask folder with fixed splits.

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


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model on micrographs and masks",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vmunet_aspp", help="registered model name (grainseg models)")
    p.add_argument("--data", required=True, help="data folder: RG/ + RGMask/ (ExONE) or images/ + masks/")
    p.add_argument("--split", default="paper", help="split name in DATA/splits.json; 'none' uses all images")
    p.add_argument("--splits-file", default=None, help="splits.json to use instead of DATA/splits.json")
    p.add_argument("--out", required=True, help="run directory (best/, metrics.json, checkpoint.pt)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1, help="images per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate: constant (the paper's) or cosine decay to 0 over --epochs")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up before the cosine decay")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--loss", default="bce", choices=["bce", "dice", "dicece"])
    p.add_argument("--patience", type=int, default=4, help="early stopping: epochs without val-loss improvement (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="disable flips / rotations / brightness-contrast")
    p.add_argument("--crop-size", type=_size, default=None,
                   help="train on random HxW crops of the resized images (validation uses full images)")
    p.add_argument("--input-size", type=_size, default=None, help="override the model's input size (default 256x256)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="float16 autocast (CUDA only)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (for --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")
    p.add_argument("--polarity", choices=["grain", "boundary"], default="grain",
                   help="what the bright pixels of the mask files are (the model always predicts grain interior)")
    p.add_argument("--threshold", type=float, default=127, help="mask binarisation threshold")
    p.add_argument("--model-kwargs", type=_json_dict, default={}, help="JSON overrides of the model preset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


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
        progress=not args.no_progress,
    )
    summary = train(cfg)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best epoch {summary['best_epoch']} (val loss {summary['best_val_loss']:.4f}); "
              f"model saved in {summary['best_dir']}")
    return 0
