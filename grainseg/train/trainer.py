"""The training loop behind ``grainseg train``: Adam, early stopping on validation loss, checkpoints.

:func:`train` (with a :class:`TrainConfig`) trains a registered model (or a model instance) on a
:class:`~grainseg.data.SegmentationDataset` split and writes, under ``out``:

- ``best/``: the checkpoint with the lowest validation loss, via ``save_pretrained`` (config.json with
  the preprocessing record, model.safetensors, README.md model card with metrics and data set);
- ``metrics.json``: the run configuration and one entry per epoch (train / val loss, val Dice and IoU at
  the network's input resolution, learning rate, seconds, images per second), rewritten every epoch;
- ``checkpoint.pt``: model, optimiser, scaler, RNG and loop state for ``resume=True`` (written at the
  end of every epoch and every ``checkpoint_every`` steps; tensors and plain values only, read back
  with ``torch.load(weights_only=True)``).

Runs are seeded: the epoch's sample order comes from a generator seeded with (seed, epoch), each
item's augmentation from (seed, epoch, index) and the global RNG (dropout, drop-path) is reseeded from
(seed, epoch, step, rank) before every step, so a run resumed at any step, mid-epoch included, is
bit-identical to an uninterrupted one.

``init`` starts from saved weights (a registered pretrained id, a Hub id or a save_pretrained folder;
see :mod:`grainseg.train.finetune`): the architecture comes from it, its id and weights sha256 are
recorded; ``freeze_encoder_epochs`` freezes the model's ``encoder_modules`` for the first epochs.
Without a split, ``val_fraction`` holds whole images out for validation; ``data="synthetic:N"`` trains
on domain-randomised synthetic micrographs.

``resume=True`` refuses a configuration that changes what the optimiser does (:data:`RESUME_FIXED`:
lr, batch size, data, crop size, schedule, ...; ``epochs`` too under the cosine schedule), naming the
field; the fields of :data:`RESUME_CHANGEABLE` (epochs, patience, ...) may change and each change is
recorded under ``resumes`` in metrics.json.  A checkpoint written before the configuration was recorded
resumes without that check (a note says so).

Before the first step every mask is checked against its image's size, and masks with no grain (or no
boundary) pixel are warned about (a polarity mistake).  A loss over :data:`LOSS_WARNING` warns
(divergence: lower the learning rate); the first non-finite loss stops the run (FloatingPointError,
recorded as ``stopped_reason`` in metrics.json).  AMP is float16 autocast + gradient scaling on CUDA
(``amp="auto"`` or ``"on"``) and, opt-in only (``amp="on"``), bfloat16 autocast on the CPU (no scaler;
measured in docs/kernels.md).  Adam is torch's fused implementation (``fused_adam=True``, about 3.5x
faster a step than the per-parameter loop on the CPU; the same update up to float rounding); a
checkpoint written before that choice was recorded resumes on the loop it was made with.  Under ``torchrun`` the model is wrapped in
DistributedDataParallel and each rank trains on its shard (``batch_size`` is per process).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from grainseg._allocator import keep_freed_memory
from grainseg._json import dumps
from grainseg._paths import is_within, removed_if_left_empty
from grainseg.data.datasets import EpochDraws, SegmentationDataset, epoch_draws
from grainseg.data.transforms import PairedAugment
from grainseg.train import distributed as dist_utils
from grainseg.train.losses import build_loss

__all__ = ["TrainConfig", "train", "CHECKPOINT_NAME", "METRICS_NAME", "BEST_DIR"]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"
BEST_DIR = "best"
#: Learning-rate schedules: ``constant`` (the paper's Adam), ``cosine`` (linear warm-up, then cosine to 0).
SCHEDULES = ("constant", "cosine")
#: TrainConfig fields a resumed run must share with its checkpoint (they change what the optimiser does).
RESUME_FIXED = ("model", "model_kwargs", "data", "split", "splits_file", "layout", "polarity", "threshold",
                "batch_size", "lr", "weight_decay", "loss", "schedule", "warmup_epochs", "seed", "augment",
                "crop_size", "input_size", "init", "freeze_encoder_epochs", "val_fraction", "split_seed",
                "augment_extra", "select_on", "fused_adam", "epoch_items",
                "boundary_grow")
#: fields added later, with the value a checkpoint written before them was made with (a resume that sets
#: another value is refused like any change of a fixed field)
MADE_WITHOUT = {"boundary_grow": 0}
#: What chooses the best checkpoint (and drives early stopping): the validation loss (lower is better)
#: or, higher being better, the validation Dice or boundary F1 (2 px, at the network resolution).
SELECT_ON = ("val_loss", "val_dice", "val_boundary_f1")
#: Fields a resumed run may change (each change is recorded in metrics.json); ``epochs`` is fixed under
#: the cosine schedule, whose length it sets.
RESUME_CHANGEABLE = ("epochs", "patience", "min_delta", "checkpoint_every", "num_workers", "device", "amp",
                     "progress")
#: A training loss above this warns that the run is diverging (the losses here are O(1) when training).
LOSS_WARNING = 1e3


def lr_at(cfg: "TrainConfig", epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate for ``step`` of ``epoch`` (both from 0): a pure function of the position, so a
    resumed run follows the same schedule without a scheduler state."""
    if cfg.schedule == "constant":
        return float(cfg.lr)
    t = epoch + step / max(steps_per_epoch, 1)
    if t < cfg.warmup_epochs:
        return float(cfg.lr) * (t + 1.0 / max(steps_per_epoch, 1)) / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return float(cfg.lr) * 0.5 * (1.0 + math.cos(math.pi * min((t - cfg.warmup_epochs) / span, 1.0)))


@dataclass
class TrainConfig:
    """Everything a training run depends on (recorded in metrics.json)."""

    data: str
    out: str
    #: registered model name; None: ``vmunet_aspp``, or the architecture of ``init`` when it is set
    model: Optional[str] = None
    #: ``"auto"``: the data's splits.json when it exists (its only split), else all images (with
    #: ``val_fraction``, a seeded hold-out); None: all images
    split: Optional[str] = "paper"
    epochs: int = 20
    batch_size: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    loss: str = "bce"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    patience: int = 4
    min_delta: float = 0.0
    seed: int = 0
    augment: bool = True
    crop_size: Optional[List[int]] = None
    #: at least this many training items per epoch: with fewer images each is drawn several times an
    #: epoch, every draw with its own augmentation and crop (:class:`~grainseg.data.datasets.EpochDraws`);
    #: 0: each image once
    epoch_items: int = 0
    #: widen the boundaries of every training and validation mask by this many network-input pixels on
    #: each side (:func:`~grainseg.data.transforms.grow_boundary`): for labels drawn with thinner lines
    #: than the ``init`` model learnt; ``"auto"``: half the difference between the band width the
    #: starting model learnt (``preprocessing["boundary_width_px"]``) and the masks', rounded; 0: as drawn
    boundary_grow: Union[int, str] = 0
    input_size: Optional[List[int]] = None
    amp: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    checkpoint_every: int = 0
    resume: bool = False
    progress: bool = True
    layout: str = "auto"
    polarity: str = "grain"
    threshold: float = 127
    splits_file: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    #: start from these weights: a registered pretrained id, a Hub id or a save_pretrained folder
    init: Optional[str] = None
    #: epochs (from the first) during which the encoder (``encoder_modules``) is frozen
    freeze_encoder_epochs: int = 0
    #: without a split: hold out this fraction of the images (whole images, seeded by split_seed) for
    #: validation; None: validate on the training images
    val_fraction: Optional[float] = None
    split_seed: int = 0
    #: optional robustness augmentations (PairedAugment ``extra``), e.g. ["invert", "gamma"]
    augment_extra: List[str] = field(default_factory=list)
    #: the validation number that picks best/ and drives early stopping (:data:`SELECT_ON`)
    select_on: str = "val_loss"
    #: torch's fused Adam (one kernel for all parameters) instead of the per-parameter loop: the same
    #: update up to float rounding, and the Adam step about 3.5x faster on the CPU
    fused_adam: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        def positive_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
                raise ValueError(f"{name} must be an int >= {0 if allow_zero else 1}, got {v!r}")

        positive_int("epochs")
        positive_int("batch_size")
        positive_int("patience", allow_zero=True)
        positive_int("num_workers", allow_zero=True)
        positive_int("checkpoint_every", allow_zero=True)
        positive_int("freeze_encoder_epochs", allow_zero=True)
        positive_int("epoch_items", allow_zero=True)
        from grainseg.data.transforms import check_boundary_grow, parse_extra

        if self.boundary_grow != "auto":
            check_boundary_grow(self.boundary_grow, "boundary_grow (an int >= 0 or 'auto')")
        if self.val_fraction is not None and not (isinstance(self.val_fraction, (int, float))
                                                  and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        self.augment_extra = list(parse_extra(self.augment_extra))
        if self.augment_extra and not self.augment:
            raise ValueError("augment_extra needs augment=True (drop --no-augment)")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("weight_decay", "min_delta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs < self.epochs):
            raise ValueError(f"warmup_epochs must be >= 0 and < epochs ({self.epochs}), got {self.warmup_epochs!r}")
        if self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {', '.join(SELECT_ON)}, got {self.select_on!r}")
        if self.amp not in ("auto", "on", "off"):
            raise ValueError(f"amp must be 'auto', 'on' or 'off', got {self.amp!r}")
        for name in ("crop_size", "input_size"):
            v = getattr(self, name)
            if isinstance(v, int) and not isinstance(v, bool):
                v = [v, v]  # one side: a square, as the CLI reads "64"
                setattr(self, name, v)
            if v is not None and (not isinstance(v, (list, tuple)) or len(v) != 2
                                  or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v)):
                raise ValueError(f"{name} must be [height, width] positive ints (or one int for a square), got {v!r}")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"model_kwargs must be a dict of model arguments, got {type(self.model_kwargs).__name__} "
                             f"{self.model_kwargs!r}")
        if not self.data or not self.out:
            raise ValueError("data and out directories are required")


def _device(name: str, info: dist_utils.DistInfo) -> torch.device:
    from grainseg.devices import resolve_device

    dev = torch.device(resolve_device(name, "device"))
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", info.local_rank)
    return dev


def amp_setting(amp: str, device: torch.device) -> tuple:
    """(autocast on, its dtype) for an ``amp`` setting on a device: float16 on CUDA (``auto`` or ``on``),
    bfloat16 on the CPU only when asked (``on``); ``off`` is fp32 everywhere."""
    if device.type == "cuda":
        return amp != "off", torch.float16
    if amp == "on" and device.type != "cpu":
        raise ValueError(f"amp='on' needs a CUDA device or the CPU (bfloat16), got {device}")
    if amp == "on" and not cpu_has_native_bf16():
        warnings.warn("amp='on' (bfloat16 autocast): this CPU has no native bfloat16 support (oneDNN needs "
                      "AVX-512 or AMX), so bfloat16 is emulated and much slower than float32 (a VM-UNet-ASPP "
                      "training step took 13x longer on an AVX2 CPU); use amp='off'", stacklevel=2)
    return amp == "on", torch.bfloat16


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 or AMX); False where torch cannot say."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """Seed of the global RNG for one step: a function of the position only (resume-proof)."""
    return hash((seed, epoch, step, rank)) & 0x7FFF_FFFF_FFFF_FFFF


def _recorded_config(cfg: "TrainConfig") -> Dict[str, Any]:
    """The configuration as a checkpoint records it (JSON values; data and splits file as absolute paths)."""
    rec = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    from grainseg.data.synthetic import parse_synthetic_spec

    if parse_synthetic_spec(cfg.data) is None:
        rec["data"] = str(Path(cfg.data).resolve())
    if cfg.init is not None:
        from grainseg.train.finetune import resolve_init_id

        rec["init"] = resolve_init_id(cfg.init)
    if cfg.splits_file is not None:
        rec["splits_file"] = str(Path(cfg.splits_file).resolve())
    return rec


def _resume_changes(cfg: "TrainConfig", ckpt: Dict[str, Any], names: Dict[str, List[str]], path: Path) -> Dict[str, list]:
    """Check a resumed run against its checkpoint: ValueError naming every fixed field that differs;
    returns the changeable fields that differ, as {field: [checkpoint value, new value]}."""
    old = {**MADE_WITHOUT, **ckpt["config"]}
    new = _recorded_config(cfg)
    fixed = RESUME_FIXED + (("epochs",) if cfg.schedule == "cosine" else ())
    bad = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in fixed if k in old and old[k] != new[k]]
    for subset, now in names.items():
        before = (ckpt.get("data_names") or {}).get(subset)
        if before is not None and before != now:
            gone, added = sorted(set(before) - set(now)), sorted(set(now) - set(before))
            bad.append(f"data: the {subset} images differ ({len(added)} added, {len(gone)} removed"
                       f"{', e.g. ' + repr((added or gone)[0]) if added or gone else ', order changed'})")
    if bad:
        raise ValueError(f"--resume: {path} was written by a run with other settings: {'; '.join(bad)}. "
                         "Resume with the checkpoint's values, or start a new --out")
    return {k: [old.get(k), new[k]] for k in RESUME_CHANGEABLE if k in old and old[k] != new[k]}


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path``; an interrupt leaves ``path`` as it was and no temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(dumps(obj) + "\n", encoding="utf-8"))


def _atomic_save(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _epoch_order(n: int, seed: int, epoch: int) -> List[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _batches(indices: Sequence[int], batch_size: int) -> List[List[int]]:
    return [list(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _batch_dice_iou(logits: Tensor, target: Tensor) -> tuple:
    """Sums over the batch of per-image Dice and IoU (prediction and mask at 0.5; empty pairs = 1)."""
    p = (torch.sigmoid(logits.float()) > 0.5).flatten(1)
    t = (target > 0.5).flatten(1)
    inter = (p & t).sum(1).double()
    ps, ts = p.sum(1).double(), t.sum(1).double()
    union = ps + ts - inter
    empty = (ps + ts) == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (ps + ts).clamp_min(1))
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    return float(dice.sum()), float(iou.sum())


def _check_out_dir(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; expected a run directory (new, or a run to --resume)")
    ours = [out / CHECKPOINT_NAME, out / METRICS_NAME, out / BEST_DIR]
    if resume:
        if not (out / CHECKPOINT_NAME).is_file():
            raise FileNotFoundError(f"--resume: {out / CHECKPOINT_NAME} does not exist (nothing to resume)")
        return
    existing = [p.name for p in ours if p.exists()]
    if existing:
        raise FileExistsError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it or choose a new --out"
        )


def _load_checkpoint(path: Path) -> Dict[str, Any]:
    """The run's checkpoint, or a ValueError naming it when it cannot be read (truncated, not a checkpoint)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        raise ValueError(f"--resume: {path} is not a readable checkpoint ({type(err).__name__}); it may be "
                         "truncated or not a grainseg checkpoint: start a new --out") from None
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "loop"} <= set(ckpt):
        raise ValueError(f"--resume: {path} is not a grainseg training checkpoint (no model / optimizer / loop state)")
    return ckpt


def _build_model(cfg: TrainConfig, model: Optional[nn.Module]) -> tuple:
    """(model, init info or None)."""
    if model is not None:
        if cfg.init is not None:
            raise ValueError("pass either a model instance or config.init (the weights to start from), not both")
        return model, None
    if cfg.init is not None:
        from grainseg.train.finetune import load_init_model

        return load_init_model(cfg.init, cfg.model_kwargs, model=cfg.model)
    from grainseg.models import create_model

    return create_model(cfg.model or "vmunet_aspp", **cfg.model_kwargs), None


def _resolve_split(cfg: TrainConfig) -> Dict[str, Any]:
    """How the images divide: {"split": name or None, "holdout": bool, "note": str or None}."""
    split, note = cfg.split, None
    if split == "auto":
        sfile = Path(cfg.splits_file) if cfg.splits_file is not None else Path(cfg.data) / "splits.json"
        if cfg.splits_file is not None or sfile.is_file():  # a given file must load: load_splits says why not
            from grainseg.data.datasets import load_splits

            names = sorted(load_splits(sfile))
            if len(names) != 1:
                raise ValueError(f"{sfile} holds the splits {names}: choose one with --split NAME "
                                 "(or --split none for a --val-fraction hold-out)")
            split = names[0]
            if cfg.val_fraction is not None:
                note = f"using split {split!r} of {sfile}; --val-fraction is not used"
        else:
            split = None
    elif split is not None and cfg.val_fraction is not None:
        raise ValueError(f"--val-fraction holds images out when there is no split; with --split {split} the "
                         "split's val list is the validation set (pass --split none to hold out instead)")
    return {"split": split, "holdout": split is None and cfg.val_fraction is not None, "note": note}


def _make_datasets(cfg: TrainConfig, prep: Dict[str, Any], in_chans: int) -> tuple:
    """(train, val, split record) for the configuration."""
    from grainseg.data.synthetic import SyntheticSegmentationDataset, parse_synthetic_spec

    augment = PairedAugment(extra=cfg.augment_extra) if cfg.augment else None
    synthetic = parse_synthetic_spec(cfg.data)
    if synthetic is not None:  # generated: train from seed stream seed, validation from another
        n, size = synthetic
        kw = dict(preprocessing=prep, in_chans=in_chans, seed=cfg.seed)
        train_ds = SyntheticSegmentationDataset(n, size, render_seed=cfg.split_seed, augment=augment,
                                                crop_size=cfg.crop_size, **kw)
        val_ds = SyntheticSegmentationDataset(max(1, n // 10), size, render_seed=cfg.split_seed + 1_000_003, **kw)
        train_ds.boundary_grow = val_ds.boundary_grow = 0 if cfg.boundary_grow == "auto" else cfg.boundary_grow
        return train_ds, val_ds, {"split": None, "synthetic": {"train": n, "val": len(val_ds), "size": list(size),
                                                               "render_seed": cfg.split_seed},
                                  "val_is_train": False, "note": None}
    how = _resolve_split(cfg)
    split = how["split"]
    common = dict(layout=cfg.layout, splits_file=cfg.splits_file, in_chans=in_chans,
                  threshold=cfg.threshold, polarity=cfg.polarity, seed=cfg.seed,
                  boundary_grow=0 if cfg.boundary_grow == "auto" else cfg.boundary_grow)
    record: Dict[str, Any] = {"split": split, "val_fraction": None, "note": how["note"]}
    if how["holdout"]:
        from grainseg.train.finetune import holdout_split

        everything = SegmentationDataset(cfg.data, None, None, preprocessing=prep, **common)
        train_names, val_names = holdout_split(everything.names, cfg.val_fraction, cfg.split_seed)
        record.update(val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, val_names=val_names,
                      val_is_train=train_names == val_names)
        train_ds = SegmentationDataset(cfg.data, None, None, preprocessing=prep, augment=augment,
                                       crop_size=cfg.crop_size, select=train_names, **common)
        val_ds = SegmentationDataset(cfg.data, None, None, preprocessing=prep, select=val_names, **common)
    else:
        train_ds = SegmentationDataset(cfg.data, split, "train" if split else None, preprocessing=prep,
                                       augment=augment, crop_size=cfg.crop_size, **common)
        val_ds = SegmentationDataset(cfg.data, split, "val" if split else None, preprocessing=prep, **common)
        record["val_is_train"] = split is None
    return train_ds, val_ds, record


def _check_inputs(cfg: TrainConfig, ds: SegmentationDataset, prep: Dict[str, Any], in_chans: int,
                  init: Optional[Dict[str, Any]]) -> None:
    """Before any step: the crop fits the network input, and the images convert to the model's channels."""
    size = prep.get("input_size")
    if cfg.crop_size is not None and size is not None and (cfg.crop_size[0] > size[0] or cfg.crop_size[1] > size[1]):
        raise ValueError(f"crop size {cfg.crop_size[0]}x{cfg.crop_size[1]} is larger than the network input "
                         f"{size[0]}x{size[1]} the images are resized to; choose a smaller --crop-size (finetune "
                         "crops 128x128 unless told otherwise)")
    if len(ds) == 0 or not hasattr(ds, "image_path"):
        return
    from grainseg.data.io import read_image
    from grainseg.data.transforms import match_channels, to_chw_tensor

    path = ds.image_path(0)
    try:
        match_channels(to_chw_tensor(read_image(path)), in_chans)
    except ValueError as err:
        who = f"the --init model {init['id']}" if init else f"model {cfg.model}"
        raise ValueError(f"{path} cannot be fed to {who}, which takes {in_chans} input channel(s): {err}") from None


def _dataset_description(cfg: TrainConfig, train_ds: SegmentationDataset, val_ds: SegmentationDataset,
                         record: Optional[Dict[str, Any]] = None) -> str:
    record = record or {"split": cfg.split}
    if record.get("synthetic"):
        s = record["synthetic"]
        return (f"synthetic domain-randomised Voronoi micrographs ({s['train']} training / {s['val']} validation, "
                f"{s['size'][0]}x{s['size'][1]}, render seed {s['render_seed']}); checkpoint chosen on validation loss")
    name = Path(cfg.data).resolve().name
    if record.get("split"):
        split = f"split `{record['split']}`"
    elif record.get("val_fraction"):
        split = (f"all images, {record['val_fraction']:g} held out for validation (seed {record['split_seed']})"
                 if not record.get("val_is_train") else "one image, validated on itself")
    else:
        split = "all images, validated on the training images"
    return (f"{name} ({split}: {len(train_ds)} training / {len(val_ds)} validation images, "
            f"{train_ds.layout} layout, mask polarity {cfg.polarity}, threshold {cfg.threshold}); "
            f"checkpoint chosen on validation loss")


def train(config: TrainConfig, model: Optional[nn.Module] = None) -> Dict[str, Any]:
    """Train and return a summary (best epoch, best val loss, history, output paths).

    ``model`` overrides ``config.model`` (any SegmentationModel instance; used by tests).
    """
    cfg = config
    cfg.validate()
    keep_freed_memory()  # glibc: reuse freed activations instead of page-faulting fresh ones every step
    info = dist_utils.init_distributed("cuda" if cfg.device.startswith("cuda") or
                                       (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        # a run that failed before writing anything leaves no empty folder behind (the main process made it)
        with removed_if_left_empty(cfg.out) if info.is_main else contextlib.nullcontext():
            return _train(cfg, model, info)
    finally:
        dist_utils.cleanup(info)


def _warn_suspicious_masks(subset: str, ds: SegmentationDataset, warn: bool) -> None:
    """Check every mask against its image (ValueError) and warn about masks without grain / boundary pixels."""
    found = ds.check_pairs()
    if not warn:
        return
    inverted = found.get("inverted") or []
    if inverted:
        frac = found["boundary_fraction"]
        mean = sum(frac.values()) / len(frac)
        warnings.warn(
            f"{len(inverted)} of {len(ds)} {subset} masks are more than 50 % boundary (mean {100 * mean:.0f} %, e.g. "
            f"{ds.mask_path(ds.names.index(inverted[0]))}): boundaries are usually a thin network, so the polarity "
            f"looks inverted. With polarity {ds.polarity!r} the mask pixels above the threshold are "
            f"{'grain' if ds.polarity == 'grain' else 'boundary'}; check --polarity "
            f"({'boundary' if ds.polarity == 'grain' else 'grain'} if your masks draw the "
            f"{'boundaries' if ds.polarity == 'grain' else 'grains'} bright)", UserWarning, stacklevel=3)
    colour = found.get("colour") or []
    if colour:
        warnings.warn(
            f"{len(colour)} of {len(ds)} {subset} masks are colour images whose channels differ (e.g. "
            f"{ds.mask_path(ds.names.index(colour[0]))}): they are averaged to grey before the threshold "
            f"{ds.threshold}, so a colour-coded mask may not mean what it shows; save masks as grey or black and "
            "white", UserWarning, stacklevel=3)
    for kind, what in (("empty", "no grain-interior pixel"), ("full", "no boundary pixel")):
        names = found[kind]
        if names:
            warnings.warn(
                f"{len(names)} of {len(ds)} {subset} masks have {what} (e.g. {ds.mask_path(ds.names.index(names[0]))})"
                f"; with polarity {ds.polarity!r} and threshold {ds.threshold} the mask pixels above the threshold "
                f"are {'grain' if ds.polarity == 'grain' else 'boundary'}: check --polarity and --threshold",
                UserWarning, stacklevel=3)


def _boundary_grow(cfg: TrainConfig, prep: Dict[str, Any], train_ds: Any, say) -> int:
    """The boundary growth in px: ``cfg.boundary_grow``, or for ``"auto"`` half the difference between the
    band width the starting model learnt (``prep["boundary_width_px"]``) and the training masks', rounded,
    at least 0 (0 and a note when the starting model does not record its width).  Without ``"auto"``, a note
    when ``auto`` would widen each side by 2 px or more."""
    learnt = prep.get("boundary_width_px")
    if cfg.boundary_grow == "auto" and learnt is None:
        say(f"note: boundary growth (auto) widens the masks' boundaries to the width the starting model learnt, but "
            f"{'--init ' + str(cfg.init) if cfg.init else 'the model'} does not record it (preprocessing"
            "['boundary_width_px'], which the trainer writes since 2026-12-07): the masks are used as drawn; pass "
            "--boundary-grow PX to widen them", flush=True)
        return 0
    if learnt is None or (cfg.boundary_grow != "auto" and cfg.boundary_grow > 0):
        return int(cfg.boundary_grow)
    drawn = train_ds.boundary_width()  # not grown yet
    if drawn is None:
        return 0
    px = max(0, round((learnt - drawn) / 2))
    if cfg.boundary_grow == "auto":
        say(f"boundary growth (auto): the training masks' boundaries are {drawn:.1f} px wide at the network input "
            f"and the starting model learnt {learnt:.1f} px: widening each side by {px} px", flush=True)
        return px
    if px >= 2:
        say(f"note: the training masks' boundaries are {drawn:.1f} px wide at the network input, the starting model "
            f"learnt {learnt:.1f} px bands; --boundary-grow auto would widen each side by {px} px (see "
            "docs/finetune.md)", flush=True)
    return 0


def _learnt_width(ds: Any, limit: int = 64) -> Optional[float]:
    """The band width the model learns (``preprocessing["boundary_width_px"]``): the boundary width of up
    to ``limit`` training targets (evenly spread; grown by ``ds.boundary_grow``), read once.  ValueError
    naming the first of them that has grain-interior pixels as drawn but none once widened."""
    from grainseg.data.datasets import spread_indices
    from grainseg.data.transforms import boundary_width

    def targets():
        for i in spread_indices(len(ds), limit):
            mask = ds.read_raw(i)[1]
            grown = ds.target(mask)
            if ds.boundary_grow and not grown.any() and np.asarray(mask).any():
                raise ValueError(f"boundary_grow {ds.boundary_grow} px leaves no grain-interior pixel in "
                                 f"{ds.mask_path(i)} at the network input ({grown.shape[-1]}x{grown.shape[-2]}): its "
                                 "grains are narrower than the widened boundaries; choose a smaller --boundary-grow "
                                 "(0: the masks as drawn)")
            yield grown

    return boundary_width(targets())


def _train(cfg: TrainConfig, model: Optional[nn.Module], info: dist_utils.DistInfo) -> Dict[str, Any]:
    device = _device(cfg.device, info)
    out = Path(cfg.out)
    if cfg.init is not None and Path(cfg.init).is_dir() and is_within(out, cfg.init):
        raise ValueError(f"--out {out} is the --init model folder {cfg.init} or inside it: a run must not write into the "
                         "model it starts from; choose another --out")
    if info.is_main:
        _check_out_dir(out, cfg.resume)
        out.mkdir(parents=True, exist_ok=True)
    dist_utils.barrier(info)

    torch.manual_seed(cfg.seed)
    say = print if info.is_main else (lambda *a, **k: None)
    model, init_info = _build_model(cfg, model)
    if init_info is not None:
        cfg = dataclasses.replace(cfg, model=init_info["model_name"])
        say(f"starting from {init_info['id']} ({init_info['architecture']}, weights sha256 "
            f"{init_info['sha256'][:12]}...)", flush=True)
        if init_info["head_reinitialised"]:
            say(f"note: {init_info['id']} predicts {init_info['saved_num_classes']} classes and the trainer trains "
                f"one (grain interior): re-initialised {', '.join(init_info['head_reinitialised'])}", flush=True)
    elif cfg.model is None:
        cfg = dataclasses.replace(cfg, model=getattr(model, "model_name", None) or "vmunet_aspp")
    base = model
    if int(getattr(base, "num_classes", 1) or 1) != 1:
        raise ValueError(f"the trainer trains one output channel (grain interior probability), but the model has "
                         f"num_classes={base.num_classes}; drop num_classes from --model-kwargs")
    prep = dict(getattr(base, "preprocessing", {}) or {})
    if cfg.input_size is not None:
        prep["input_size"] = [int(s) for s in cfg.input_size]
    in_chans = int(getattr(base, "in_chans", 3))
    train_ds, val_ds, split_record = _make_datasets(cfg, prep, in_chans)
    if split_record.get("note"):
        say(f"note: {split_record['note']}", flush=True)
    if len(train_ds) == 0:
        raise ValueError(f"the training set of {cfg.data} (split {split_record['split']!r}) holds no images")
    if len(val_ds) == 0:
        raise ValueError(f"the validation set of {cfg.data} (split {split_record['split']!r}) holds no images")
    if split_record.get("val_is_train") and not split_record.get("val_fraction") and info.is_main:
        warnings.warn("no split and no --val-fraction: validating on the training images, so the best "
                      "checkpoint and early stopping follow the training fit; pass --val-fraction 0.2 to hold "
                      "images out", UserWarning, stacklevel=2)
    _check_inputs(cfg, train_ds, prep, in_chans, init_info)
    for subset, ds in (("training", train_ds), ("validation", val_ds)):
        _warn_suspicious_masks(subset, ds, info.is_main)
    grow = _boundary_grow(cfg, prep, train_ds, say)
    train_ds.boundary_grow = val_ds.boundary_grow = grow
    prep["boundary_width_px"] = _learnt_width(train_ds)  # before any step: refuses a growth that empties a mask
    freezer = None
    if cfg.freeze_encoder_epochs > 0:
        from grainseg.train.finetune import EncoderFreeze

        if not hasattr(base, "encoder_parameters"):
            raise ValueError(f"{type(base).__name__} does not define its encoder; train without freeze_encoder_epochs")
        freezer = EncoderFreeze(base, cfg.freeze_encoder_epochs)
    prep["train_image_size"] = train_ds.common_image_size()
    from grainseg.inference.rescale import training_intercept  # the grain size rescale="auto" matches

    prep["grain_intercept_px"] = training_intercept(train_ds, prep.get("input_size"))
    if hasattr(base, "preprocessing"):
        from grainseg.data.preprocessing import normalize_preprocessing

        base.preprocessing = normalize_preprocessing(prep)
    train_ds.preprocessing = val_ds.preprocessing = getattr(base, "preprocessing", prep)

    model = base.to(device)
    use_amp, amp_dtype = amp_setting(cfg.amp, device)
    criterion = build_loss(cfg.loss)
    fused = cfg.fused_adam
    ckpt = _load_checkpoint(out / CHECKPOINT_NAME) if cfg.resume else None
    if ckpt is not None:  # a checkpoint that predates a field was made without it (the loop, one draw): keep that
        if "fused_adam" not in (ckpt.get("config") or {}) and fused:
            say(f"note: {out / CHECKPOINT_NAME} predates fused Adam; resuming with the per-parameter Adam it "
                "was made with (bit-identical to an uninterrupted run)", flush=True)
            fused = False
            cfg = dataclasses.replace(cfg, fused_adam=False)
        if "epoch_items" not in (ckpt.get("config") or {}) and cfg.epoch_items:
            say(f"note: {out / CHECKPOINT_NAME} predates --epoch-items; resuming with each image once an epoch, as "
                "it was made", flush=True)
            cfg = dataclasses.replace(cfg, epoch_items=0)
    draws = epoch_draws(cfg.epoch_items, len(train_ds))
    epoch_ds = EpochDraws(train_ds, draws)  # one draw: the training set's own items, as without it
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 **({"fused": True} if fused else {}))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    state = {"epoch": 0, "step_in_epoch": 0, "loss_sum": 0.0, "seen": 0, "best_val_loss": math.inf,
             "best_epoch": None, "bad_epochs": 0, "history": [], "stopped_early": False, "epoch_seconds": 0.0,
             "resumes": [], "stopped_reason": None}
    data_names = {"train": list(train_ds.names), "val": list(val_ds.names)}
    init_sha = init_info["sha256"] if init_info else None
    if ckpt is not None:
        if ckpt.get("model_name") != cfg.model or ckpt.get("split") != cfg.split:
            raise ValueError(f"--resume: {out / CHECKPOINT_NAME} is a run of model {ckpt.get('model_name')!r} "
                             f"on split {ckpt.get('split')!r}, not {cfg.model!r} on {cfg.split!r}")
        if ckpt.get("config") is not None:
            changed = _resume_changes(cfg, ckpt, data_names, out / CHECKPOINT_NAME)
        else:
            changed = None
            say(f"note: {out / CHECKPOINT_NAME} predates recorded run settings; resuming without checking that "
                "lr, batch size, data and the rest match the original run", flush=True)
        if ckpt.get("init_sha256") is not None and ckpt.get("init_sha256") != init_sha:
            raise ValueError(f"--resume: {out / CHECKPOINT_NAME} started from --init weights with sha256 "
                             f"{ckpt['init_sha256'][:12]}..., but {cfg.init} now holds "
                             f"{(init_sha or 'none')[:12]}...: the starting model changed; start a new --out")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler.is_enabled() and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        state.update(ckpt["loop"])
        if cfg.epochs < state["epoch"]:
            raise ValueError(f"--resume: {out / CHECKPOINT_NAME} has already run {state['epoch']} epochs; --epochs "
                             f"{cfg.epochs} would train nothing: give --epochs above {state['epoch']} to continue")
        state["stopped_reason"] = None
        state["resumes"] = list(state.get("resumes") or []) + [
            {"epoch": state["epoch"], "step_in_epoch": state["step_in_epoch"], "changed": changed}]
        if changed:
            say(f"resuming with changed settings: {', '.join(f'{k} {a!r} -> {b!r}' for k, (a, b) in changed.items())}",
                flush=True)
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        ckpt = None  # the run holds its own copies now; free the loaded checkpoint

    if info.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                    find_unused_parameters=freezer is not None)

    def checkpoint() -> None:
        if not info.is_main:
            return
        _atomic_save({
            "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None, "loop": state,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "model_name": cfg.model, "split": cfg.split,
            "config": _recorded_config(cfg), "data_names": data_names, "init_sha256": init_sha,
        }, out / CHECKPOINT_NAME)

    run_record = {"config": dataclasses.asdict(cfg), "world_size": info.world_size, "device": str(device),
                  "amp": str(amp_dtype).replace("torch.", "") if use_amp else False, "preprocessing": train_ds.preprocessing,
                  "num_parameters": sum(p.numel() for p in model.parameters()),
                  "train_images": len(train_ds), "val_images": len(val_ds), "epoch_draws": draws,
                  "boundary_grow_px": grow, "split_used": split_record,
                  "init": None if init_info is None else {k: init_info[k] for k in (
                      "id", "sha256", "architecture", "head_reinitialised")}}
    card_kwargs = {} if init_info is None else {
        "init_model": init_info["id"], "init_sha256": init_info["sha256"],
        "init_base_model": None if Path(cfg.init).expanduser().is_dir() else init_info["id"]}

    def write_metrics() -> None:
        if info.is_main:
            _atomic_write_json(out / METRICS_NAME, {**run_record, **{k: state[k] for k in (
                "best_epoch", "best_val_loss", "stopped_early", "stopped_reason", "resumes")},
                "epochs": state["history"]})

    loader_kw = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                     persistent_workers=False)
    warned = [False]
    say(f"training {cfg.model} on {device} (world size {info.world_size}, amp "
        f"{str(amp_dtype).replace('torch.', '') if use_amp else False}): "
        f"{len(train_ds)} train / {len(val_ds)} val images"
        f"{f' (each drawn {draws} times an epoch)' if draws > 1 else ''}, batch {cfg.batch_size}, lr {cfg.lr}, "
        f"loss {cfg.loss}", flush=True)

    while state["epoch"] < cfg.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        train_ds.set_epoch(epoch)
        batches = _batches(dist_utils.shard_indices(_epoch_order(len(epoch_ds), cfg.seed, epoch), info), cfg.batch_size)
        start_step = state["step_in_epoch"]
        loader = DataLoader(epoch_ds, batch_sampler=batches[start_step:], **loader_kw,
                            generator=torch.Generator().manual_seed(_step_seed(cfg.seed, epoch, -1, info.rank)))
        model.train()
        if freezer is not None and freezer.apply(epoch) and state["step_in_epoch"] == 0:
            say(f"epoch {epoch + 1}: encoder frozen ({', '.join(base.encoder_modules)})", flush=True)
        t0 = time.perf_counter() - state["epoch_seconds"]
        bar = _progress(len(batches), start_step, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and info.is_main)
        for step, batch in enumerate(loader, start=start_step):
            x = batch["image"].to(device, non_blocking=True)
            y = batch["mask"].to(device, non_blocking=True)
            torch.manual_seed(_step_seed(cfg.seed, epoch, step, info.rank))  # dropout etc.: resume-proof
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(x)
            loss = criterion(logits.float(), y)
            value = float(loss.detach())
            if not math.isfinite(value):
                state["stopped_reason"] = f"non-finite loss ({value}) at epoch {epoch + 1}, step {step + 1}"
                write_metrics()
                raise FloatingPointError(f"training stopped: loss became {value} at epoch {epoch + 1}, step "
                                         f"{step + 1} (lr {lr_at(cfg, epoch, step, len(batches)):g}); lower --lr. "
                                         f"The best checkpoint so far is kept in {out / BEST_DIR}")
            if value > LOSS_WARNING and not warned[0]:
                warned[0] = True
                warnings.warn(f"training loss is {value:.3g} at epoch {epoch + 1}, step {step + 1}: the run is "
                              f"diverging; lower the learning rate (lr {cfg.lr:g})", UserWarning, stacklevel=2)
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch, step, len(batches))
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            state["loss_sum"] += value * x.shape[0]
            state["seen"] += x.shape[0]
            state["step_in_epoch"] = step + 1
            elapsed = time.perf_counter() - t0
            state["epoch_seconds"] = elapsed
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{state['loss_sum'] / state['seen']:.4f}",
                                img_s=f"{state['seen'] * info.world_size / max(elapsed, 1e-9):.2f}")
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < len(batches):
                checkpoint()
        if bar is not None:
            bar.close()
        train_loss_sum, train_seen = dist_utils.all_reduce_sum([state["loss_sum"], state["seen"]], info, device)
        val = _validate(model, val_ds, criterion, cfg.batch_size, device, use_amp, info, loader_kw, amp_dtype)
        seconds = time.perf_counter() - t0
        entry = {"epoch": epoch + 1, "train_loss": train_loss_sum / max(train_seen, 1), **val,
                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
                 "train_images_per_s": round(train_seen / max(state["epoch_seconds"], 1e-9), 3)}
        state["history"].append(entry)
        if cfg.select_on == "val_loss":
            improved = val["val_loss"] < state["best_val_loss"] - cfg.min_delta
        else:
            best = state.get("best_score")
            improved = best is None or val[cfg.select_on] > best + cfg.min_delta
        if improved:
            state["best_val_loss"], state["best_epoch"], state["bad_epochs"] = val["val_loss"], epoch + 1, 0
            state["best_score"] = val[cfg.select_on]
            if info.is_main:
                _unwrap(model).save_pretrained(
                    out / BEST_DIR, overwrite=True, dataset=_dataset_description(cfg, train_ds, val_ds, split_record),
                    model_card_kwargs=card_kwargs,
                    metrics={"epoch": epoch + 1, "val_loss": val["val_loss"], "val_dice": val["val_dice"],
                             "val_iou": val["val_iou"], **{k: val[k] for k in ("val_boundary_f1",) if k in val},
                             "train_loss": entry["train_loss"], "selected_on": cfg.select_on})
        else:
            state["bad_epochs"] += 1
        stop = cfg.patience > 0 and state["bad_epochs"] >= cfg.patience
        state["stopped_early"] = dist_utils.broadcast_flag(stop, info, device)
        say(f"epoch {epoch + 1}: train_loss {entry['train_loss']:.4f} val_loss {val['val_loss']:.4f} "
            f"val_dice {val['val_dice']:.4f}{_extra_scores(val)} ({seconds:.0f}s){' *best*' if improved else ''}"
            f"{' early stop' if state['stopped_early'] else ''}", flush=True)
        state.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, seen=0, epoch_seconds=0.0)
        checkpoint()
        write_metrics()
        dist_utils.barrier(info)

    write_metrics()
    return {"out": str(out), "best_dir": str(out / BEST_DIR), "best_epoch": state["best_epoch"],
            "best_val_loss": state["best_val_loss"], "stopped_early": state["stopped_early"],
            "epochs_run": len(state["history"]), "history": state["history"]}


def _extra_scores(val: Dict[str, float]) -> str:
    """The epoch line's all-grain Dice and boundary F1, where the validation reported them."""
    parts = []
    if "val_dice_all_grain" in val:
        parts.append(f" (all-grain {val['val_dice_all_grain']:.4f})")
    if "val_boundary_f1" in val:
        parts.append(f" val_bf1 {val['val_boundary_f1']:.4f}")
    return "".join(parts)


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0)


@torch.no_grad()
def _validate(model: nn.Module, ds: SegmentationDataset, criterion: nn.Module, batch_size: int,
              device: torch.device, use_amp: bool, info: dist_utils.DistInfo, loader_kw: dict,
              amp_dtype: torch.dtype = torch.float16) -> Dict[str, float]:
    """Mean loss, per-image Dice, IoU and boundary F1 (2 px) over the (sharded) validation set, at the
    network resolution, and
    the Dice of predicting grain everywhere (``val_dice_all_grain``: the score a model must beat; grain
    interiors cover most of a micrograph)."""
    model.eval()
    own = list(range(len(ds)))[info.rank::info.world_size]
    from grainseg.train.metrics import boundary_f1

    sums = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # loss * n, dice, iou, n, dice of "all grain", boundary F1
    if own:
        for batch in DataLoader(ds, batch_sampler=_batches(own, batch_size), **loader_kw):
            x, y = batch["image"].to(device), batch["mask"].to(device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                logits = _unwrap(model)(x)
            logits = logits.float()
            sums[0] += float(criterion(logits, y)) * x.shape[0]
            d, i = _batch_dice_iou(logits, y)
            sums[1] += d
            sums[2] += i
            sums[3] += x.shape[0]
            sums[4] += _batch_dice_iou(torch.ones_like(logits), y)[0]
            prob = torch.sigmoid(logits).cpu().numpy()
            sums[5] += sum(boundary_f1(prob[i, 0], y[i, 0].cpu().numpy()) for i in range(x.shape[0]))
    loss, dice, iou, n, trivial, bf1 = dist_utils.all_reduce_sum(sums, info, device)
    model.train()
    n = max(n, 1)
    return {"val_loss": loss / n, "val_dice": dice / n, "val_iou": iou / n, "val_dice_all_grain": trivial / n,
            "val_boundary_f1": bf1 / n}
