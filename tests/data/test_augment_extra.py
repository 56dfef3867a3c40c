"""The optional robustness steps of PairedAugment (``extra=``): each on its own, then together."""
from __future__ import annotations

import pytest
import torch

from grainseg.data.transforms import EXTRA_AUGMENTATIONS, PairedAugment, gaussian_blur, jpeg_roundtrip, parse_extra

GEOMETRIC = ("scale", "elastic")
PHOTOMETRIC = tuple(n for n in EXTRA_AUGMENTATIONS if n not in GEOMETRIC)


def _pair(c=3, h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand((1, h, w), generator=g) > 0.4).float()
    image = torch.rand((c, h, w), generator=g)
    return image, mask


def _only(name, **kw):
    """Only the named extra step, always applied (the standard steps off)."""
    return PairedAugment(hflip=0, vflip=0, rot90=0, rotate_p=0, photometric_p=0, extra=[name], extra_p=1.0, **kw)


def _gen(seed=3):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", EXTRA_AUGMENTATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_each_step_keeps_shape_dtype_range_and_a_binary_mask(name, channels):
    image, mask = _pair(channels)
    out, m = _only(name)(image, mask, _gen())
    assert out.shape == image.shape and out.dtype == torch.float32
    assert m.shape == mask.shape and m.dtype == mask.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    if name in PHOTOMETRIC:
        assert torch.equal(m, mask)  # photometric: the mask is untouched
    if not (name == "grey" and channels == 1):  # grey on a grey image is the identity
        assert not torch.equal(out, image), name


@pytest.mark.parametrize("name", EXTRA_AUGMENTATIONS)
def test_each_step_is_deterministic_under_the_generator(name):
    image, mask = _pair()
    a = _only(name)(image, mask, _gen(7))
    b = _only(name)(image, mask, _gen(7))
    c = _only(name)(image, mask, _gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    if name not in ("invert", "grey"):  # those two have no random strength
        assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_steps_move_image_and_mask_together(name):
    _, mask = _pair(h=64, w=64)
    image = mask.expand(3, -1, -1).clone()  # the image is the mask: warped alike, they must agree
    out, m = _only(name)(image, mask, _gen(1))
    assert not torch.equal(m, mask)
    decided = (out[0] - 0.5).abs() > 1e-4  # off the threshold, where rounding cannot flip a pixel
    assert decided.float().mean() > 0.9
    assert torch.equal((out[0] > 0.5)[decided].float(), m[0][decided])


def test_scale_zooms_about_the_centre():
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disk = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 10 ** 2).float()[None]
    aug = _only("scale", scale_range=(1.5, 1.5))
    _, m = aug(disk.expand(3, -1, -1), disk, _gen())
    assert float(m.sum()) / float(disk.sum()) == pytest.approx(1.5 ** 2, rel=0.1)


def test_photometric_steps_do_what_they_say():
    image, mask = _pair()
    assert torch.allclose(_only("invert")(image, mask, _gen())[0], 1 - image)
    grey = _only("grey")(image, mask, _gen())[0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert torch.allclose(grey[0], image.mean(0))
    flat = torch.full((1, 32, 32), 0.5)
    noisy = _only("noise", noise_std=0.05)(flat, mask[:, :32, :32], _gen())[0]
    assert 0 < float(noisy.std()) < 0.06
    edge = torch.zeros((1, 32, 32))
    edge[..., 16:] = 1.0
    blurred = gaussian_blur(edge, 1.5)
    assert 0.1 < float(blurred[0, 5, 15]) < 0.5 and float(blurred[0, 5, 0]) == pytest.approx(0.0, abs=1e-6)
    gam = _only("gamma", gamma_range=(2.0, 2.0))(image, mask, _gen())[0]
    assert torch.allclose(gam, image ** 2, atol=1e-6)
    col = _only("colour", colour=0.2)(image, mask, _gen())[0]
    ratio = (col / image.clamp_min(1e-3)).flatten(1).median(1).values
    assert float(ratio.max() - ratio.min()) > 1e-3  # channels scaled differently


def test_jpeg_roundtrip_adds_artefacts_but_keeps_the_picture():
    image, _ = _pair(3, 64, 64)
    low = jpeg_roundtrip(image, 10)
    high = jpeg_roundtrip(image, 95)
    err_low, err_high = float((low - image).abs().mean()), float((high - image).abs().mean())
    assert err_high < err_low < 0.3 and err_high > 0


def test_no_extra_is_the_stream_of_before():
    image, mask = _pair()
    for seed in range(5):
        a = PairedAugment()(image, mask, _gen(seed))
        b = PairedAugment(extra=(), extra_p=1.0)(image, mask, _gen(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_all_steps_together_and_names():
    image, mask = _pair()
    aug = PairedAugment(extra="all", extra_p=1.0)
    assert aug.extra == EXTRA_AUGMENTATIONS
    out, m = aug(image, mask, _gen())
    assert out.shape == image.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert parse_extra("Gamma, color,gray") == ("grey", "colour", "gamma")
    assert parse_extra(None) == () and parse_extra("") == ()
    with pytest.raises(ValueError, match="unknown extra augmentation 'sharpen'"):
        PairedAugment(extra=["sharpen"])
    with pytest.raises(ValueError, match="extra_p"):
        PairedAugment(extra=["invert"], extra_p=2)
    with pytest.raises(ValueError, match="scale_range"):
        PairedAugment(scale_range=(0, 1))
