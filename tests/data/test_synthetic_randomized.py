"""Domain-randomised synthetic micrographs and the ``synthetic:N`` training source."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grainseg.data.synthetic import (SyntheticSegmentationDataset, _draw_lines, _draw_particles, make_micrograph,
                                     parse_synthetic_spec, render_randomized, tessellate)
from grainseg.data.transforms import PairedAugment

from tests.helpers.tinydata import tiny_model, train_config, write_tiny_folders

from grainseg.train.trainer import train


def test_randomized_style_keeps_the_exact_mask_and_is_seeded():
    a = make_micrograph((64, 64), n_grains=8, seed=3, style="randomized")
    b = make_micrograph((64, 64), n_grains=8, seed=3, style="randomized")
    optical = make_micrograph((64, 64), n_grains=8, seed=3)
    assert np.array_equal(a.mask, optical.mask) and np.array_equal(a.labels, optical.labels)
    assert np.array_equal(a.image, b.image) and a.image.dtype == np.uint8
    assert a.image.shape[:2] == (64, 64) and a.image.ndim in (2, 3)
    with pytest.raises(ValueError, match="style"):
        make_micrograph((32, 32), style="painted")


def test_randomized_rendering_varies_the_contrast_polarity():
    labels, mask, dist = tessellate((64, 64), np.random.default_rng(0).uniform(0, 64, (12, 2)), 5.0)
    bright = []
    for seed in range(16):
        img = render_randomized(labels, mask, dist, seed).astype(np.float64)
        img = img.mean(-1) if img.ndim == 3 else img
        bright.append(img[mask == 0].mean() > img[mask == 1].mean())
    assert 3 <= sum(bright) <= 13  # both dark and bright boundaries occur


def test_scratches_and_particles_draw_something_and_follow_the_weights():
    rng = np.random.default_rng(0)
    assert _draw_lines((32, 32), 0, rng, (1, 2)).sum() == 0
    lines = _draw_lines((32, 32), 3, rng, (1, 2))
    assert 0 < lines.mean() < 0.5 and lines.max() <= 1
    near = np.zeros((32, 32))
    near[:, :4] = 1.0  # particles only in the left strip
    parts = _draw_particles((32, 32), 10, rng, (1.0, 1.5), near)
    assert parts.sum() > 0 and parts[:, 10:].sum() == 0


def test_spec_parsing():
    assert parse_synthetic_spec("synthetic:12") == (12, (256, 256))
    assert parse_synthetic_spec("synthetic:3:64x48") == (3, (64, 48))
    assert parse_synthetic_spec("synthetic:3:64") == (3, (64, 64))
    assert parse_synthetic_spec("some/folder") is None
    for bad in ("synthetic:", "synthetic:0", "synthetic:x", "synthetic:3:8", "synthetic:3:4x4x4"):
        with pytest.raises(ValueError, match="synthetic:N"):
            parse_synthetic_spec(bad)


def test_synthetic_dataset_items_are_seeded_and_augmented_per_epoch():
    ds = SyntheticSegmentationDataset(3, (48, 48), preprocessing={"input_size": [32, 32]},
                                      augment=PairedAugment(), crop_size=[24, 24])
    item = ds[1]
    assert item["image"].shape == (3, 24, 24) and item["mask"].shape == (1, 24, 24)
    assert item["image"].dtype == torch.float32 and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(ds[1]["image"], item["image"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], item["image"])
    with pytest.raises(IndexError):
        ds[3]


def test_train_on_synthetic_then_finetune_from_it(tmp_path):
    out = tmp_path / "pre"
    train(train_config("synthetic:4:32", out, split=None), model=tiny_model())
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_images"] == 4 and m["val_images"] == 1 and m["config"]["data"] == "synthetic:4:32"
    assert "synthetic domain-randomised" in (out / "best" / "README.md").read_text()
    data = write_tiny_folders(tmp_path / "mine", n=3)
    train(train_config(data, tmp_path / "ft", split=None, val_fraction=0.34, init=str(out / "best")))
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["init"]["id"] == str((out / "best").resolve()) and m["val_images"] == 1

