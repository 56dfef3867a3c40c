"""preprocess_image (the shared preprocessing) and the paired augmentations keep image and mask aligned."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grainseg.data.transforms import PairedAugment, preprocess_image, preprocess_mask, resize_mask


def test_preprocess_minmax_resize_and_channels():
    img = np.linspace(1000, 50000, 40 * 30, dtype=np.float64).reshape(40, 30).astype(np.uint16)
    x = preprocess_image(img, {"normalize": "minmax", "input_size": [16, 12]}, in_chans=3)
    assert x.shape == (1, 3, 16, 12) and x.dtype == torch.float32
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 0], x[0, 2])  # gray repeated
    full = preprocess_image(img, {"input_size": None}, in_chans=1)
    assert full.shape == (1, 1, 40, 30)
    assert full.min().item() == 0.0 and full.max().item() == 1.0
    rgb = np.stack([img, img // 2, img // 4], axis=-1)
    gray = preprocess_image(rgb, {"input_size": None, "normalize": "none"}, in_chans=1)
    assert torch.allclose(gray[0, 0], torch.from_numpy(rgb.astype(np.float32).mean(-1)))
    assert preprocess_image(np.full((5, 5), 7, np.uint8), None, 3).abs().sum() == 0  # constant -> 0, default 256
    assert preprocess_image(np.zeros((5, 5), np.uint8), None, 3).shape == (1, 3, 256, 256)


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="normalize"):
        preprocess_image(np.zeros((4, 4)), {"normalize": "zscore?"}, 3)
    with pytest.raises(ValueError, match="input_size"):
        preprocess_image(np.zeros((4, 4)), {"input_size": [0, 4]}, 3)
    with pytest.raises(ValueError, match="shape"):
        preprocess_image(np.zeros((4, 4, 5, 2)), None, 3)


def test_mask_resize_stays_binary_and_matches_image_resize():
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 6:26] = 1
    out = preprocess_mask(m, {"input_size": [20, 20]})
    assert out.shape == (1, 20, 20) and set(out.unique().tolist()) == {0.0, 1.0}
    assert out[0, 5:15, 3:12].all() and out.sum() == 100
    assert torch.equal(resize_mask(torch.ones(1, 8, 8), [8, 8]), torch.ones(1, 8, 8))


def _marker_pair(h=24, w=24, r=3, c=17):
    img = torch.zeros(3, h, w)
    mask = torch.zeros(1, h, w)
    img[:, r, c] = 1.0
    mask[0, r, c] = 1.0
    return img, mask


@pytest.mark.parametrize("seed", range(8))
def test_flips_and_rot90_move_image_and_mask_together(seed):
    img, mask = _marker_pair()
    aug = PairedAugment(hflip=0.5, vflip=0.5, rot90=1.0, rotate_p=0.0, photometric_p=0.0)
    a, m = aug(img, mask, torch.Generator().manual_seed(seed))
    assert a[0].argmax() == m[0].argmax() and m.sum() == 1
    assert a.shape == img.shape


def test_small_rotation_keeps_alignment_and_binary_mask():
    img, mask = torch.zeros(1, 32, 32), torch.zeros(1, 32, 32)
    img[0, 6:12, 18:24] = 1.0
    mask[0, 6:12, 18:24] = 1.0
    aug = PairedAugment(hflip=0, vflip=0, rot90=0, rotate_deg=40, rotate_p=1.0, photometric_p=0)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    changed = 0
    for seed in range(4):
        a, m = aug(img, mask, torch.Generator().manual_seed(seed))
        changed += int(not torch.equal(m, mask))
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        ci = [(ys * a[0]).sum() / a[0].sum(), (xs * a[0]).sum() / a[0].sum()]
        cm = [(ys * m[0]).sum() / m[0].sum(), (xs * m[0]).sum() / m[0].sum()]
        assert abs(ci[0] - cm[0]) < 0.75 and abs(ci[1] - cm[1]) < 0.75
        assert abs(ci[0] - 8.5) + abs(ci[1] - 20.5) > 0.3 or torch.equal(m, mask)  # moved when rotated
    assert changed >= 2


def test_photometric_changes_image_only_and_is_reproducible():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 16, 16, generator=g)
    mask = (torch.rand(1, 16, 16, generator=g) > 0.5).float()
    aug = PairedAugment(hflip=0, vflip=0, rot90=0, rotate_p=0, photometric_p=1.0, brightness=0.2, contrast=0.2)
    a1, m1 = aug(img, mask, torch.Generator().manual_seed(5))
    a2, m2 = aug(img, mask, torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2) and torch.equal(m1, mask) and not torch.equal(a1, img)
    assert 0.0 <= a1.min() and a1.max() <= 1.0


def test_augment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="hflip"):
        PairedAugment(hflip=1.5)
    with pytest.raises(ValueError, match="share"):
        PairedAugment()(torch.zeros(3, 8, 8), torch.zeros(1, 8, 9))


def test_grow_boundary_widens_the_boundary_class_by_a_disk_of_radius_px():
    from grainseg.data.transforms import grow_boundary

    line = torch.ones(1, 20, 20)
    line[0, 10, :] = 0  # a 1 px boundary line
    grown = grow_boundary(line, 2)
    assert grown.shape == line.shape and grown.dtype == line.dtype
    assert ((1 - grown[0]).sum(0) == 5).all()  # 1 + 2 px on each side, in every column
    assert torch.equal((1 - grown[0])[:, 7].nonzero().flatten(), torch.arange(8, 13))
    dot = torch.ones(15, 15)
    dot[7, 7] = 0
    # a round disk, not the 5x5 square: the 21 pixels with x^2 + y^2 <= 6
    assert int((1 - grow_boundary(dot, 2)).sum()) == 21 and grow_boundary(dot, 2)[5, 5] == 1
    corner = torch.ones(2, 1, 8, 8)  # batch dims kept; the border is not boundary (no wrap-around)
    corner[..., 0, 0] = 0
    out = grow_boundary(corner, 1)
    assert out.shape == (2, 1, 8, 8) and int((1 - out[0, 0]).sum()) == 4 and out[0, 0, 7, 7] == 1
    assert grow_boundary(torch.ones(1, 6, 6), 3).all()  # no boundary: nothing grows
    assert grow_boundary(line, 0) is line


@pytest.mark.parametrize("px", [-1, 1.5, True, "2"])
def test_grow_boundary_rejects_a_bad_width_naming_it(px):
    from grainseg.data.transforms import grow_boundary

    with pytest.raises(ValueError, match=r"px \(pixels added to each side"):
        grow_boundary(torch.ones(4, 4), px)


def test_grow_boundary_rejects_a_non_image():
    from grainseg.data.transforms import grow_boundary

    with pytest.raises(ValueError, match=r"mask must be a \(\.\.\., H, W\) tensor, got ndarray"):
        grow_boundary(np.ones((4, 4)), 1)
    with pytest.raises(ValueError, match=r"of shape \(4,\)"):
        grow_boundary(torch.ones(4), 1)


def test_thin_labels_benchmark_thins_bands_to_3px_lines_that_still_close_the_grains():
    from scipy.ndimage import label

    from tests.helpers.benchmarks import load_benchmark

    from grainseg.data.synthetic import make_micrograph
    from grainseg.data.transforms import boundary_width

    thin_labels = load_benchmark("thin_labels")
    m = make_micrograph((128, 128), n_grains=12, boundary_width=9.0, seed=3).mask.astype(np.uint8)
    thin = thin_labels.thin_mask(m)
    assert boundary_width([m]) > 7 and 2.5 < boundary_width([thin]) < 4  # 3 px lines; junctions add a little
    assert thin.dtype == np.uint8 and thin.sum() > m.sum()
    assert label(thin)[1] == label(m)[1]  # the same grains, none merged by the thinning
