"""read_image refuses a decompression bomb from its header, before decoding; the limit can be raised."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from grainseg.cli import main
from grainseg.data import io
from grainseg.data.io import DEFAULT_MAX_PIXELS, ImageTooLargeError, image_header_size, pixel_limit, read_image


def _png_header_only(path, width, height):
    """A PNG whose header declares width x height 8-bit grey, with (far too little) zlib data: ~100 bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
                     + chunk(b"IEND", b""))
    return path


def test_tiff_declaring_40000_squared_is_refused_before_decoding(tmp_path, monkeypatch):
    import tifffile

    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, shape=(40000, 40000), dtype="uint8")  # sparse: a few KB on disk
    monkeypatch.setattr(tifffile.TiffFile, "asarray", lambda *a, **k: pytest.fail("decoded the bomb"))
    with pytest.raises(ImageTooLargeError, match=r"40000x40000 = 1,600,000,000 pixels.*--max-pixels") as err:
        read_image(path)
    assert str(path) in str(err.value)
    assert image_header_size(path) == (40000, 40000)


def test_png_bomb_is_refused_with_our_message(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(ImageTooLargeError, match="30000x30000"):
        read_image(path)
    assert image_header_size(path) == (30000, 30000)


def test_limit_is_documented_and_can_be_lowered_or_raised(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(path)
    assert DEFAULT_MAX_PIXELS == io.MAX_PIXELS and "max_pixels" in io.__doc__
    with pytest.raises(ImageTooLargeError, match="limit of 1,999"):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).shape == (40, 50)
    with pixel_limit(100):
        with pytest.raises(ImageTooLargeError):
            read_image(path)
    assert read_image(path).shape == (40, 50)  # the limit is back
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(path, max_pixels=0)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(path, max_pixels=True)


def test_our_limit_governs_not_pillows(tmp_path, monkeypatch):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse (bomb error above 200 pixels)
    assert read_image(path).shape == (40, 50)
    assert Image.MAX_IMAGE_PIXELS == 100  # and its setting is left as it was


def test_cli_max_pixels_option(tmp_path, capsys):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(path)
    rc = main(["predict", str(path), "--max-pixels", "1000", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "over the limit of 1,000" in err and "--max-pixels" in err
    assert io.MAX_PIXELS == DEFAULT_MAX_PIXELS
