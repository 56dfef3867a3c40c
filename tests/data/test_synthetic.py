"""Synthetic Voronoi / tiling micrographs: exact masks, labels and counts, determinism, the Dataset."""
import numpy as np
import pytest
import torch

from grainseg.data.synthetic import (
    SyntheticGrainDataset,
    hexagonal_seeds,
    make_micrograph,
    random_seeds,
    square_seeds,
    tessellate,
)


def test_micrograph_arrays_and_conventions():
    s = make_micrograph((120, 150), n_grains=15, boundary_width=6, seed=0)
    assert s.image.shape == (120, 150) and s.image.dtype == np.uint8
    assert s.mask.dtype == np.uint8 and set(np.unique(s.mask)) == {0, 1}
    assert s.labels.dtype == np.int32 and s.labels.min() == 1
    assert s.n_grains == len(np.unique(s.labels[s.mask == 1]))
    # grain interiors are bright, boundaries dark (the ExONE look and mask polarity: 1 = interior)
    assert s.image[s.mask == 1].mean() > s.image[s.mask == 0].mean() + 60
    assert s.density == pytest.approx(15 / (120 * 150))
    c = make_micrograph((40, 50), n_grains=4, seed=0, color=True)
    assert c.image.shape == (40, 50, 3)


def test_deterministic_by_seed():
    a = make_micrograph((64, 64), n_grains=6, seed=42)
    b = make_micrograph((64, 64), n_grains=6, seed=42)
    c = make_micrograph((64, 64), n_grains=6, seed=43)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.labels, c.labels)


def test_labels_are_the_nearest_seed():
    seeds, _ = random_seeds((50, 60), 10, rng=1)
    labels, mask, _ = tessellate((50, 60), seeds, 0.0)
    yy, xx = np.mgrid[0:50, 0:60]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    nearest = d.argmin(-1)
    # same partition (labels are relabelled to 1..N in seed order)
    _, want = np.unique(nearest, return_inverse=True)
    np.testing.assert_array_equal(labels - 1, want.reshape(50, 60))
    assert mask.all()  # zero width: no boundary pixels


def test_square_tiling_is_exact():
    seeds, density = square_seeds((60, 80), 20, (0, 0))
    labels, mask, _ = tessellate((60, 80), seeds, 4)
    assert density == pytest.approx(1 / 400)
    assert len(np.unique(labels)) == 12
    for (r, c) in [(0, 0), (25, 45), (59, 79)]:
        block = labels[r // 20 * 20:(r // 20 + 1) * 20, c // 20 * 20:(c // 20 + 1) * 20]
        assert (block == labels[r, c]).all()
    # 4 px boundary bands: 2 px on each side of every cell edge
    assert (mask[:, 18:22] == 0).all() and (mask[2:18, 2:18] == 1).all()


def test_boundary_width_sets_the_band():
    seeds, _ = hexagonal_seeds((200, 200), 40)
    fractions = []
    for width in (2, 4, 8):
        _, mask, _ = tessellate((200, 200), seeds, width)
        fractions.append(1 - mask.mean())
    # boundary area ~ width * boundary length: doubles with the width (minus the triple-junction overlap)
    assert 1.8 < fractions[1] / fractions[0] < 2.1 and 1.8 < fractions[2] / fractions[1] < 2.1


def test_dataset_items():
    ds = SyntheticGrainDataset(length=3, size=(48, 64), n_grains=(4, 8), seed=5)
    image, mask = ds[1]
    assert len(ds) == 3 and image.shape == (3, 48, 64) and mask.shape == (1, 48, 64)
    assert image.dtype == torch.float32 and float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(ds[1][0], image)
    with pytest.raises(IndexError):
        ds[3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        make_micrograph((0, 10))
    with pytest.raises(ValueError, match="lattice"):
        make_micrograph((10, 10), lattice="triangle")
    with pytest.raises(ValueError, match="cell_size"):
        make_micrograph((10, 10), lattice="square")
    with pytest.raises(ValueError, match="n_grains"):
        random_seeds((10, 10), 0)
    with pytest.raises(ValueError, match="seeds"):
        tessellate((10, 10), np.zeros((3,)))
