"""SegmentationDataset over the ExONE and images/masks layouts, splits, and clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.tinydata import write_tiny_exone, write_tiny_folders

from grainseg.data import SegmentationDataset, find_pairs, load_splits
from grainseg.data.transforms import PairedAugment

PREP = {"input_size": [16, 16]}


def test_exone_layout_split_sizes_and_items(tmp_path):
    root = write_tiny_exone(tmp_path / "d")
    ds = SegmentationDataset(root, "paper", "train", preprocessing=PREP)
    assert ds.layout == "exone" and len(ds) == 4
    assert len(SegmentationDataset(root, "paper", "val")) == 2
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (1, 16, 16)
    assert item["name"] == "RG1_1_1.jpg" and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert ds.common_image_size() == [32, 32]
    assert len(SegmentationDataset(root)) == 8  # no split: every image


def test_folders_layout_pairs_by_stem_across_extensions(tmp_path):
    root = write_tiny_folders(tmp_path / "f", n=3, mask_ext=".jpg")
    pairs = find_pairs(root)
    assert sorted(pairs) == ["img0.png", "img1.png", "img2.png"]
    assert pairs["img1.png"][1].name == "img1.jpg"
    ds = SegmentationDataset(root, preprocessing={"input_size": None}, in_chans=1)
    assert ds.layout == "folders" and ds[2]["image"].shape == (1, 32, 32)
    raw_img, raw_mask = ds.read_raw(0)
    assert raw_img.shape == (32, 32, 3) and raw_mask.dtype == np.uint8


def test_mask_polarity_inverts_the_target(tmp_path):
    root = write_tiny_folders(tmp_path / "f", n=1)
    grain = SegmentationDataset(root, preprocessing={"input_size": None})[0]["mask"]
    boundary = SegmentationDataset(root, preprocessing={"input_size": None}, polarity="boundary")[0]["mask"]
    assert torch.equal(grain, 1 - boundary)


def test_unpaired_files_raise_naming_the_file(tmp_path):
    root = write_tiny_folders(tmp_path / "f", n=2)
    (root / "masks" / "img1.png").unlink()
    with pytest.raises(ValueError, match=r"img1\.png has no mask"):
        SegmentationDataset(root)
    root2 = write_tiny_folders(tmp_path / "g", n=2)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root2 / "masks" / "stray.png")
    with pytest.raises(ValueError, match=r"stray\.png has no matching image"):
        SegmentationDataset(root2)
    root3 = write_tiny_folders(tmp_path / "h", n=1)
    (root3 / "images" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="readme.txt"):
        SegmentationDataset(root3)


def test_unreadable_image_raises_naming_the_file(tmp_path):
    root = write_tiny_folders(tmp_path / "f", n=2)
    (root / "images" / "img1.png").write_bytes(b"corrupt")
    ds = SegmentationDataset(root)
    ds[0]
    with pytest.raises(ValueError, match=r"img1\.png"):
        ds[1]


def test_split_errors(tmp_path):
    root = write_tiny_exone(tmp_path / "d")
    with pytest.raises(ValueError, match="split 'grouped' is not in"):
        SegmentationDataset(root, "grouped", "train")
    with pytest.raises(ValueError, match="subset"):
        SegmentationDataset(root, "paper", "holdout")
    splits = json.loads((root / "splits.json").read_text())
    splits["paper"]["test"].append("RG99_1_1.jpg")
    (root / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ValueError, match="RG99_1_1.jpg"):
        SegmentationDataset(root, "paper", "test")
    (root / "splits.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_splits(root / "splits.json")
    with pytest.raises(ValueError, match="neither"):
        SegmentationDataset(tmp_path)


def test_augmented_items_are_seeded_by_epoch(tmp_path):
    root = write_tiny_exone(tmp_path / "d")
    ds = SegmentationDataset(root, "paper", "train", preprocessing=PREP, augment=PairedAugment(), crop_size=[8, 8], seed=1)
    a, b = ds[0], ds[0]
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 8, 8)
    images = [ds[0]["image"]]
    for epoch in (1, 2, 3):
        ds.set_epoch(epoch)
        images.append(ds[0]["image"])
    assert any(not torch.equal(images[0], im) for im in images[1:])


def test_real_exone_splits(exone_data):
    for split in ("paper", "grouped"):
        sizes = {s: len(SegmentationDataset(exone_data, split, s)) for s in ("train", "val", "test")}
        assert sizes == {"train": 384, "val": 48, "test": 48}
    train = set(SegmentationDataset(exone_data, "paper", "train").names)
    test = SegmentationDataset(exone_data, "paper", "test")
    assert not train & set(test.names)
    item = test[0]
    assert item["image"].shape == (3, 256, 256) and 0.6 < item["mask"].mean() < 0.95
    assert test.common_image_size() == [400, 400]


def test_epoch_draws_repeat_a_small_set_with_fresh_augmentation(tmp_path):
    from grainseg.data.datasets import EpochDraws, epoch_draws

    assert (epoch_draws(0, 4), epoch_draws(3, 4), epoch_draws(4, 4), epoch_draws(10, 4)) == (1, 1, 1, 3)
    with pytest.raises(ValueError, match="n_images"):
        epoch_draws(10, 0)
    root = write_tiny_exone(tmp_path / "d")
    ds = SegmentationDataset(root, "paper", "train", preprocessing=PREP, augment=PairedAugment(), crop_size=[8, 8], seed=1)
    draws = EpochDraws(ds, 3)
    n = len(ds)
    assert len(draws) == 3 * n
    first = draws[0]
    assert torch.equal(first["image"], ds[0]["image"]) and torch.equal(first["mask"], ds[0]["mask"])  # draw 0: as before
    again = [draws[k * n] for k in (1, 2)]
    assert all(d["name"] == ds.names[0] and d["index"] == 0 for d in again)
    assert all(not torch.equal(d["image"], first["image"]) for d in again)  # each draw its own crop / augmentation
    assert torch.equal(draws[n]["image"], EpochDraws(ds, 3)[n]["image"])  # seeded: the same on every run
    with pytest.raises(IndexError, match="out of range"):
        draws[3 * n]
    with pytest.raises(ValueError, match="draws"):
        EpochDraws(ds, 0)


def test_boundary_grow_widens_the_target_boundaries_after_the_resize(tmp_path):
    from grainseg.data.transforms import grow_boundary

    root = write_tiny_exone(tmp_path / "d")
    plain = SegmentationDataset(root, "paper", "train", preprocessing=PREP)
    grown = SegmentationDataset(root, "paper", "train", preprocessing=PREP, boundary_grow=1)
    assert plain.boundary_grow == 0 and grown.boundary_grow == 1
    m0, m1 = plain[0]["mask"], grown[0]["mask"]
    assert 0 < m1.sum() < m0.sum() and torch.equal(m1, grow_boundary(m0, 1))
    assert torch.equal(plain[0]["image"], grown[0]["image"])
    with pytest.raises(ValueError, match="boundary_grow .* must be an int >= 0, got -2"):
        SegmentationDataset(root, "paper", "train", boundary_grow=-2)
