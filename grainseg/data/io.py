"""Reading micrographs and masks from disk, keeping their bit depth.

``read_image`` returns an (H, W) or (H, W, 3) numpy array as stored (uint8, uint16 or float), so the
per-image min-max normalisation in :func:`grainseg.data.transforms.preprocess_image` sees the real
dynamic range of 16-bit TIFFs.  ``read_mask`` turns a mask file into a {0, 1} uint8 array, thresholding
JPEG artefacts; the result is always 1 = grain interior (the paper's positive class), whatever the
file's convention (``polarity``: which class the file stores as bright / 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "SUPPORTED_FORMATS", "read_image", "read_mask", "binarize_mask", "MASK_POLARITIES"]

#: File suffixes read by :func:`read_image` (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SUPPORTED_FORMATS = "PNG, JPEG, TIFF (8/16-bit, gray or RGB, float) and BMP"
#: What the bright (= 1) pixels of a mask file mean: ``"grain"`` interior (ExONE) or ``"boundary"`` lines.
MASK_POLARITIES = ("grain", "boundary")

PathLike = Union[str, Path]


def _unsupported(path: Path, why: str) -> ValueError:
    return ValueError(f"cannot read image {path}: {why}. Supported formats: {SUPPORTED_FORMATS}")


def _to_hw_or_hwc3(arr: np.ndarray, path: Path) -> np.ndarray:
    """Squeeze singleton channels, drop alpha, and check the result is (H, W) or (H, W, 3)."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA: drop alpha
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):  # planar TIFF (C, H, W)
        arr = np.moveaxis(arr, 0, -1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # gray + alpha
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise _unsupported(path, f"expected a 2-D gray or 3-channel image, got array of shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise _unsupported(path, "the image is empty")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype.kind not in "uif":
        raise _unsupported(path, f"pixel type {arr.dtype} is not numeric")
    return np.ascontiguousarray(arr)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        return np.asarray(tifffile.imread(str(path)))
    except Exception as err:  # corrupt or not a TIFF
        raise _unsupported(path, f"{type(err).__name__}: {err}") from err


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            elif im.mode == "LA":
                im = im.convert("L")
            elif im.mode == "1":
                im = im.convert("L")
            if im.mode.startswith("I;16"):
                arr = np.array(im, dtype=np.uint16)
            else:
                arr = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise _unsupported(path, f"{type(err).__name__}: {err}") from err
    if arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:  # Pillow "I" from 16-bit PNG
        arr = arr.astype(np.uint16)
    return arr


def read_image(path: PathLike) -> np.ndarray:
    """Read a micrograph as an (H, W) or (H, W, 3) array, keeping its dtype (uint8, uint16 or float).

    Raises FileNotFoundError when ``path`` does not exist and ValueError (naming the file and the
    supported formats) when it cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise _unsupported(path, f"unsupported file extension {path.suffix!r}")
    if suffix in (".tif", ".tiff"):
        arr = _read_tiff(path)
    else:
        arr = _read_pillow(path)
    return _to_hw_or_hwc3(arr, path)


def binarize_mask(mask: np.ndarray, threshold: float = 127, polarity: str = "grain") -> np.ndarray:
    """(H, W[, C]) mask array -> {0, 1} uint8 (H, W) with 1 = grain interior.

    Pixels ``> threshold`` are bright; ``polarity`` says whether bright means grain (kept) or boundary
    (inverted).

    Colour masks are averaged over channels first.  ``threshold`` is in the array's own units (127 for
    8-bit masks; use e.g. 32767 for 16-bit, 0.5 for float masks).
    """
    if polarity not in MASK_POLARITIES:
        raise ValueError(f"polarity must be one of {MASK_POLARITIES}, got {polarity!r}")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.astype(np.float64).mean(axis=-1)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W) or (H, W, C), got shape {mask.shape}")
    bright = mask > threshold
    return (bright if polarity == "grain" else ~bright).astype(np.uint8)


def read_mask(path: PathLike, threshold: float = 127, polarity: str = "grain") -> np.ndarray:
    """Read a mask file as a {0, 1} uint8 (H, W) array with 1 = grain interior.

    ``polarity="grain"``: the file's bright pixels are grain interior (the ExONE convention: white =
    grain, black = boundary); ``polarity="boundary"``: the file's bright pixels are boundary lines, so
    they become 0.  The threshold (127 by default) removes the mid-grey JPEG artefacts.
    """
    return binarize_mask(read_image(path), threshold=threshold, polarity=polarity)
