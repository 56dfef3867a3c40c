"""Datasets over image / mask folders, with fixed splits from a ``splits.json``.

Two layouts are recognised (``layout="auto"`` picks whichever exists under ``root``):

- ``"exone"``: ``RG/RG{s}_{r}_{c}.jpg`` with masks ``RGMask/RGMask{s}_{r}_{c}.jpg`` (the ExONE 316L set).
- ``"folders"``: ``images/<stem>.<ext>`` with ``masks/<stem>.<ext>`` paired by file stem (any supported
  extensions; ``<stem>_mask`` is accepted too).

``splits.json`` maps a split name to ``{"train": [...], "val": [...], "test": [...]}`` lists of image
file names (or stems).  Every listed image must exist and have a mask; every image in the folders must
have a mask: anything unpaired or unreadable raises a ValueError naming the file, never a silent skip.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .io import IMAGE_EXTENSIONS, check_mask_threshold, mask_from_array, mask_full_scale, read_image, read_mask
from .preprocessing import normalize_preprocessing
from .transforms import PairedAugment, boundary_width, check_boundary_grow, grow_boundary, image_to_input, mask_to_target

__all__ = ["LAYOUTS", "SegmentationDataset", "EpochDraws", "epoch_draws", "find_pairs", "load_splits", "detect_layout",
           "random_crop", "image_size", "spread_indices"]

LAYOUTS = ("exone", "folders")
#: A mask with more boundary than this fraction of its pixels looks inverted (see ``check_pairs``).
INVERTED_BOUNDARY_FRACTION = 0.5
SUBSETS = ("train", "val", "test")
PathLike = Union[str, Path]


def detect_layout(root: PathLike) -> str:
    """``"exone"`` when ``root`` has RG/ and RGMask/, ``"folders"`` when it has images/ and masks/."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"data directory {root} is a file; expected a folder with RG/ + RGMask/ or images/ + masks/")
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {root} does not exist")
    if (root / "RG").is_dir() and (root / "RGMask").is_dir():
        return "exone"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folders"
    raise ValueError(
        f"data directory {root} has neither RG/ + RGMask/ (ExONE layout) nor images/ + masks/ (folders layout)"
    )


def _image_files(folder: Path) -> List[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    bad = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if bad:
        raise ValueError(
            f"{bad[0]} is not a supported image file (extensions {', '.join(IMAGE_EXTENSIONS)}); "
            f"remove it from {folder} ({len(bad)} such file(s))"
        )
    return files


def _index_by_stem(files: Sequence[Path], folder: Path) -> Dict[str, Path]:
    out: Dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise ValueError(f"{folder} holds two files with stem {p.stem!r}: {out[p.stem].name} and {p.name}")
        out[p.stem] = p
    return out


def find_pairs(root: PathLike, layout: str = "auto") -> Dict[str, Tuple[Path, Path]]:
    """{image file name: (image path, mask path)} for every image under ``root`` (errors on unpaired files)."""
    root = Path(root)
    layout = detect_layout(root) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    img_dir, mask_dir = (root / "RG", root / "RGMask") if layout == "exone" else (root / "images", root / "masks")
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{layout} layout expects the folder {d}")
    images, masks = _image_files(img_dir), _index_by_stem(_image_files(mask_dir), mask_dir)
    _index_by_stem(images, img_dir)  # duplicate stems among images are ambiguous too
    pairs: Dict[str, Tuple[Path, Path]] = {}
    used = set()
    for img in images:
        if layout == "exone":
            if not img.stem.startswith("RG"):
                raise ValueError(f"{img} does not follow the ExONE naming RG<s>_<r>_<c> (its mask would be RGMask<...>)")
            candidates = ["RGMask" + img.stem[2:]]
        else:
            candidates = [img.stem, img.stem + "_mask"]
        found = [c for c in candidates if c in masks]
        if not found:
            raise ValueError(f"image {img} has no mask in {mask_dir} (looked for {' or '.join(c + '.*' for c in candidates)})")
        pairs[img.name] = (img, masks[found[0]])
        used.add(found[0])
    orphans = sorted(set(masks) - used)
    if orphans:
        raise ValueError(f"mask {masks[orphans[0]]} has no matching image in {img_dir} ({len(orphans)} unpaired mask(s))")
    if not pairs:
        raise ValueError(f"no images found in {img_dir}")
    return pairs


def load_splits(path: PathLike) -> Dict[str, Dict[str, List[str]]]:
    """Read a splits.json: {split name: {"train"|"val"|"test": [image names]}} (other keys are ignored)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"splits file {path} is a folder; expected a splits.json file")
    if not path.is_file():
        raise FileNotFoundError(f"splits file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"splits file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"splits file {path} must hold a JSON object of split name -> subsets")
    out = {}
    for name, subsets in data.items():
        if isinstance(subsets, dict) and subsets and set(subsets) <= set(SUBSETS) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in subsets.values()
        ):
            out[name] = {k: list(v) for k, v in subsets.items()}
    if not out:
        raise ValueError(f"splits file {path} holds no split with train/val/test lists of image names")
    return out


def random_crop(image: Tensor, mask: Tensor, size: Sequence[int], generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
    """The same random (h, w) window of a (C, H, W) image and its (1, H, W) mask."""
    h, w = int(size[0]), int(size[1])
    H, W = image.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop size {h}x{w} is larger than the image {H}x{W}")
    top = int(torch.randint(0, H - h + 1, (), generator=generator))
    left = int(torch.randint(0, W - w + 1, (), generator=generator))
    return image[:, top:top + h, left:left + w].contiguous(), mask[:, top:top + h, left:left + w].contiguous()


def image_size(path: PathLike) -> Tuple[int, int]:
    """(H, W) of an image file from its header (decoding it only where no header reader knows the format)."""
    from .io import image_header_size

    size = image_header_size(Path(path))
    return size if size is not None else tuple(read_image(path).shape[:2])


def spread_indices(n: int, limit: int) -> List[int]:
    """At most ``limit`` of the indices 0..n-1, evenly spread, in order (all of them when n <= limit): the
    masks a statistic of a large training set is taken over."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, limit))}) if n > 0 else []


class PreprocessedItems:
    """What both datasets share: the ``preprocessing`` record, normalised once when it is set, and the
    item built from a raw image and mask (preprocessed, then augmented and cropped with a generator
    seeded from (seed, epoch, index)).  Needs ``in_chans``, ``augment``, ``crop_size``, ``seed``,
    ``epoch`` and ``names``; ``boundary_grow`` (px, default 0) widens the targets' boundaries
    (:func:`~grainseg.data.transforms.grow_boundary`) after the resize to the network input."""

    boundary_grow: int = 0

    @property
    def preprocessing(self) -> Dict[str, Any]:
        return self._preprocessing

    @preprocessing.setter
    def preprocessing(self, value: Optional[Mapping[str, Any]]) -> None:
        self._preprocessing = normalize_preprocessing(value)

    def make_item(self, image: Any, mask: Any, index: int, draw: int = 0) -> Dict[str, Any]:
        """``draw``: which of an epoch's repeated draws of the image this is (:class:`EpochDraws`); each
        draw gets its own augmentation and crop (draw 0 keeps the (seed, epoch, index) stream)."""
        x = image_to_input(image, self._preprocessing, self.in_chans)[0]
        m = self.target(mask)
        key = (self.seed, self.epoch, index) if draw == 0 else (self.seed, self.epoch, index, draw)
        x, m = augment_item(x, m, self.augment, self.crop_size, key)
        return {"image": x, "mask": m, "name": self.names[index], "index": index}

    def target(self, mask: Any) -> Tensor:
        """A raw {0, 1} mask as the network's (1, H', W') target: resized, boundaries grown, not augmented."""
        return grow_boundary(mask_to_target(mask, self._preprocessing), self.boundary_grow)

    def boundary_width(self, limit: int = 64) -> Optional[float]:
        """Mean boundary band width of the targets in network-input pixels (grown by ``boundary_grow``;
        :func:`~grainseg.data.transforms.boundary_width`), over at most ``limit`` masks evenly spread."""
        return boundary_width(self.target(self.read_raw(i)[1]) for i in spread_indices(len(self), limit))

    def item(self, index: int, draw: int = 0) -> Dict[str, Any]:
        """Item ``index``, its ``draw``-th draw of the epoch: read, then built (the caller checks the index)."""
        return self.make_item(*self.read_raw(index), index, draw)


class SegmentationDataset(PreprocessedItems, Dataset):
    """Image / mask pairs of one subset of a split, preprocessed like the model expects.

    Items are dicts: ``image`` float32 (in_chans, H, W) from :func:`preprocess_image`, ``mask`` float32
    (1, H, W) in {0, 1} (1 = grain interior), ``name`` (image file name) and ``index``.  With ``augment``
    (a :class:`PairedAugment`) and/or ``crop_size`` the item is augmented with a generator seeded from
    (seed, epoch, index), so a run is reproducible and a resumed run sees the same data.
    """

    def __init__(
        self,
        root: PathLike,
        split: Optional[str] = None,
        subset: Optional[str] = None,
        *,
        layout: str = "auto",
        splits_file: Optional[PathLike] = None,
        preprocessing: Optional[Mapping[str, Any]] = None,
        in_chans: int = 3,
        augment: Optional[PairedAugment] = None,
        crop_size: Optional[Sequence[int]] = None,
        threshold: float = 127,
        polarity: str = "grain",
        seed: int = 0,
        select: Optional[Sequence[str]] = None,
        boundary_grow: int = 0,
    ) -> None:
        self.root = Path(root)
        self.layout = detect_layout(self.root) if layout == "auto" else layout
        pairs = find_pairs(self.root, self.layout)
        self.split, self.subset = split, subset
        if split is None:
            if subset is not None:
                raise ValueError(f"subset={subset!r} needs a split name (e.g. split='paper')")
            names = sorted(pairs)
            if select is not None:
                unknown = [n for n in select if n not in pairs]
                if unknown:
                    raise ValueError(f"{unknown[0]!r} is not an image (with a mask) under {self.root}")
                names = [n for n in names if n in set(select)]
        else:
            if select is not None:
                raise ValueError("select (a list of image names) applies only without a split")
            if subset not in SUBSETS:
                raise ValueError(f"subset must be one of {SUBSETS} when a split is given, got {subset!r}")
            sfile = Path(splits_file) if splits_file is not None else self.root / "splits.json"
            splits = load_splits(sfile)
            if split not in splits:
                raise ValueError(f"split {split!r} is not in {sfile}; it has {sorted(splits)}")
            if subset not in splits[split]:
                raise ValueError(f"split {split!r} in {sfile} has no {subset!r} list")
            by_stem = {Path(n).stem: n for n in pairs}
            names = []
            for entry in splits[split][subset]:
                name = entry if entry in pairs else by_stem.get(Path(entry).stem)
                if name is None:
                    raise ValueError(f"{sfile} lists {entry!r} in {split}/{subset}, but there is no such image (with a mask) under {self.root}")
                names.append(name)
            if len(set(names)) != len(names):
                raise ValueError(f"{sfile} lists an image twice in {split}/{subset}")
        self.names: List[str] = names
        self.pairs = {n: pairs[n] for n in names}
        self.preprocessing = preprocessing
        self.in_chans = in_chans
        self.augment = augment
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.threshold, self.polarity = check_mask_threshold(threshold), polarity
        self.seed, self.epoch = int(seed), 0
        self.boundary_grow = check_boundary_grow(boundary_grow)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        which = f"split={self.split!r}, subset={self.subset!r}" if self.split else "all images"
        return f"SegmentationDataset({str(self.root)!r}, {which}, layout={self.layout!r}, n={len(self)})"

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (the trainer calls this at every epoch)."""
        self.epoch = int(epoch)

    def image_path(self, index: int) -> Path:
        return self.pairs[self.names[index]][0]

    def mask_path(self, index: int) -> Path:
        return self.pairs[self.names[index]][1]

    def read_raw(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The image as stored and its {0, 1} mask at the image's own resolution (no preprocessing)."""
        img_path, mask_path = self.pairs[self.names[index]]
        image = read_image(img_path)
        mask = read_mask(mask_path, threshold=self.threshold, polarity=self.polarity)
        if image.shape[:2] != mask.shape:
            raise ValueError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {img_path} is "
                             f"{image.shape[1]}x{image.shape[0]}")
        return image, mask

    def image_sizes(self) -> List[Tuple[int, int]]:
        """(H, W) of every image, read from the file headers only."""
        return [image_size(self.pairs[n][0]) for n in self.names]

    def check_pairs(self) -> Dict[str, List[str]]:
        """Check every pair before training: ValueError naming the first mask whose size is not its image's.

        Image sizes come from the file headers; masks are read (and binarised).  Returns the names of the
        images whose mask has no grain-interior pixel (``"empty"``), no boundary pixel (``"full"``) and
        more boundary than grain (``"inverted"``: over :data:`INVERTED_BOUNDARY_FRACTION` of the pixels
        boundary, not empty; grain boundaries are a thin network, so such a mask is most likely read
        with the wrong ``polarity``), ``"boundary_fraction"``: {name: boundary fraction} of those, and
        ``"colour"``: masks whose colour channels differ (they are averaged to grey before the threshold).
        """
        found: Dict[str, Any] = {"empty": [], "full": [], "inverted": [], "boundary_fraction": {}, "colour": []}
        for name in self.names:
            img_path, mask_path = self.pairs[name]
            raw = read_image(mask_path)
            if raw.ndim == 3:  # channels apart by over 1/8 of the range (not JPEG rounding): colour-coded
                rgb = raw.astype(np.float32)  # float: no wrap-around for signed integer files
                if float((rgb.max(-1) - rgb.min(-1)).max()) > mask_full_scale(raw) / 8:
                    found["colour"].append(name)  # averaged to grey: it may not mean what it shows
            mask = mask_from_array(raw, threshold=self.threshold, polarity=self.polarity)
            h, w = image_size(img_path)
            if (h, w) != mask.shape:
                raise ValueError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {img_path} is "
                                 f"{w}x{h}; every mask must have its image's size")
            if not mask.any():
                found["empty"].append(name)
            elif mask.all():
                found["full"].append(name)
            elif 1.0 - float(mask.mean()) > INVERTED_BOUNDARY_FRACTION:
                found["inverted"].append(name)
                found["boundary_fraction"][name] = 1.0 - float(mask.mean())
        return found

    def common_image_size(self) -> Optional[List[int]]:
        """[H, W] when all images share one size, else None (recorded as ``train_image_size``)."""
        sizes = set(self.image_sizes())
        return list(sizes.pop()) if len(sizes) == 1 else None

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.item(index)


def epoch_draws(epoch_items: int, n_images: int) -> int:
    """How many times an epoch draws each of ``n_images`` training images so that it holds at least
    ``epoch_items`` items (0: once)."""
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    return max(1, math.ceil(epoch_items / n_images))


class EpochDraws(Dataset):
    """A training set drawn ``draws`` times per epoch: item ``k * len(dataset) + i`` is image ``i``'s
    ``k``-th draw, with its own augmentation and crop.  A few labelled images then still make an epoch of
    many steps (``TrainConfig.epoch_items``) instead of one step per image."""

    def __init__(self, dataset: "PreprocessedItems", draws: int) -> None:
        if not isinstance(draws, int) or draws < 1:
            raise ValueError(f"draws must be an int >= 1, got {draws!r}")
        self.dataset, self.draws = dataset, draws

    def __len__(self) -> int:
        return len(self.dataset) * self.draws

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} draws")
        draw, i = divmod(index, len(self.dataset))
        return self.dataset.item(i, draw)


def augment_item(image: Tensor, mask: Tensor, augment: Optional[PairedAugment], crop_size: Optional[Sequence[int]],
                 key: Tuple[int, ...]) -> Tuple[Tensor, Tensor]:
    """Augment, then crop, an item with a generator seeded from ``key`` = (seed, epoch, index[, draw])."""
    if augment is None and crop_size is None:
        return image, mask
    g = torch.Generator().manual_seed(hash(tuple(key)) & 0x7FFFFFFFFFFFFFFF)
    if augment is not None:
        image, mask = augment(image, mask, g)
    if crop_size is not None:
        image, mask = random_crop(image, mask, crop_size, g)
    return image, mask
