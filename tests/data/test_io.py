"""read_image / read_mask: formats, bit depth, errors naming the file, mask threshold and polarity."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from grainseg.data.io import binarize_mask, read_image, read_mask


def test_png_jpeg_rgb_and_gray_keep_uint8(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    a, g, j = read_image(tmp_path / "a.png"), read_image(tmp_path / "g.png"), read_image(tmp_path / "a.jpg")
    assert a.dtype == np.uint8 and a.shape == (9, 11, 3) and np.array_equal(a, rgb)
    assert g.shape == (9, 11) and np.array_equal(g, rgb[..., 0])
    assert j.shape == (9, 11, 3) and j.dtype == np.uint8


def test_16bit_png_and_tiff_keep_their_depth(tmp_path):
    import tifffile

    img16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500).astype(np.uint16)
    Image.fromarray(img16).save(tmp_path / "d.png")
    tifffile.imwrite(tmp_path / "d.tif", img16)
    tifffile.imwrite(tmp_path / "rgb.tiff", np.stack([img16] * 3, axis=-1))
    tifffile.imwrite(tmp_path / "f.tif", img16.astype(np.float32) / 7)
    png, tif = read_image(tmp_path / "d.png"), read_image(tmp_path / "d.tif")
    assert png.dtype == np.uint16 and np.array_equal(png, img16)
    assert tif.dtype == np.uint16 and np.array_equal(tif, img16)
    assert read_image(tmp_path / "rgb.tiff").shape == (12, 10, 3)
    f = read_image(tmp_path / "f.tif")
    assert f.dtype == np.float32 and np.allclose(f, img16 / 7)


def test_rgba_drops_alpha(tmp_path):
    Image.fromarray(np.full((4, 5, 4), 200, np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (4, 5, 3)


def test_unreadable_and_unsupported_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png.*Supported formats"):
        read_image(bad)
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match="notes.txt.*unsupported file extension"):
        read_image(txt)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    badtif = tmp_path / "broken.tif"
    badtif.write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="broken.tif"):
        read_image(badtif)


def test_mask_threshold_and_polarity(tmp_path):
    values = np.array([[0, 100, 127, 128, 200, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[0, 0, 0, 1, 1, 1]]
    assert read_mask(tmp_path / "m.png", polarity="boundary").tolist() == [[1, 1, 1, 0, 0, 0]]
    assert read_mask(tmp_path / "m.png", threshold=50).tolist() == [[0, 1, 1, 1, 1, 1]]
    assert read_mask(tmp_path / "m.png").dtype == np.uint8
    with pytest.raises(ValueError, match="polarity"):
        read_mask(tmp_path / "m.png", polarity="white")
    # colour masks are averaged over channels
    assert binarize_mask(np.stack([values[0]] * 3, axis=-1)[None]).tolist() == [[0, 0, 0, 1, 1, 1]]


def test_mask_threshold_is_on_the_8bit_scale_whatever_the_depth(tmp_path):
    import tifffile

    grain = np.array([[0, 0, 1, 1, 1, 0]], dtype=bool)
    Image.fromarray((grain * 65535).astype(np.uint16)).save(tmp_path / "m16.png")
    mid = np.where(grain, 40000, 20000).astype(np.uint16)  # 16-bit greys either side of 127 * 257
    tifffile.imwrite(tmp_path / "mid16.tif", mid)
    tifffile.imwrite(tmp_path / "f.tif", grain.astype(np.float32))
    Image.fromarray(grain.astype(np.uint8)).save(tmp_path / "m01.png")  # a 0/1 label image
    for name in ("m16.png", "mid16.tif", "f.tif", "m01.png"):
        assert read_mask(tmp_path / name).tolist() == grain.astype(np.uint8).tolist(), name
    assert read_mask(tmp_path / "m01.png", polarity="boundary").tolist() == (~grain).astype(np.uint8).tolist()
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "zero.png")  # all 0 stays all boundary
    assert read_mask(tmp_path / "zero.png").tolist() == [[0, 0, 0], [0, 0, 0]]
    for bad in (300, -1, 255, float("nan"), float("inf"), "127", True):
        with pytest.raises(ValueError, match="mask threshold must be a number in \\[0, 255\\)"):
            read_mask(tmp_path / "m01.png", threshold=bad)
    with pytest.raises(ValueError, match="finite"):
        binarize_mask(np.zeros((2, 2)), threshold=float("nan"))


def test_mask_full_scale_is_shared_by_the_threshold_and_the_colour_check(tmp_path):
    """A float mask on the 8-bit scale (0-255) with channels 1 apart is grey, not colour-coded; a float mask
    within [0, 1] whose channels differ by half the range is colour-coded."""
    import tifffile

    from grainseg.data.datasets import SegmentationDataset
    from grainseg.data.io import mask_full_scale

    assert mask_full_scale(np.zeros(3, np.uint16)) == 65535.0
    assert mask_full_scale(np.array([0.0, 1.0], np.float32)) == 1.0
    assert mask_full_scale(np.array([0.0, 255.0], np.float32)) == 255.0
    assert mask_full_scale(np.array([0, 1], np.uint8)) == 255.0
    grain = np.zeros((8, 8), bool)
    grain[2:6, 2:6] = True
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    grey = np.where(grain, 250.0, 3.0).astype(np.float32)
    masks = {"grey255": np.stack([grey, grey + 1, grey], -1),
             "colour01": np.stack([grain.astype(np.float32), np.zeros((8, 8), np.float32), grain * 0.5], -1)}
    for name, m in masks.items():
        Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "images" / f"{name}.png")
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", m)
    found = SegmentationDataset(tmp_path).check_pairs()
    assert found["colour"] == ["colour01.png"]
    assert read_mask(tmp_path / "masks" / "grey255.tif").tolist() == grain.astype(np.uint8).tolist()


def test_exone_mask_has_about_half_a_percent_grey(exone_data):
    raw = read_image(exone_data / "RGMask" / "RGMask1_1_1.jpg")
    grey = ((raw > 20) & (raw < 235)).mean()
    assert raw.shape == (400, 400) and 0 < grey < 0.05
    mask = read_mask(exone_data / "RGMask" / "RGMask1_1_1.jpg")
    assert set(np.unique(mask)) == {0, 1} and 0.6 < mask.mean() < 0.95  # grain interior dominates
