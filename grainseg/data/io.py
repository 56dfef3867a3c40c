"""Reading micrographs and masks from disk, keeping their bit depth.

``read_image`` returns an (H, W) or (H, W, 3) numpy array as stored (uint8, uint16 or float), so the
per-image min-max normalisation in :func:`grainseg.data.transforms.preprocess_image` sees the real
dynamic range of 16-bit TIFFs.  ``read_mask`` turns a mask file into a {0, 1} uint8 array, thresholding
JPEG artefacts; the result is always 1 = grain interior (the paper's positive class), whatever the
file's convention (``polarity``: which class the file stores as bright / 1).

Size limit: an image is refused (:class:`ImageTooLargeError`, a ValueError) when its header declares
more than ``max_pixels`` pixels (H x W; default :data:`MAX_PIXELS`, 100 million, e.g. 10000 x 10000),
before anything is decoded: a small compressed file can declare a huge image (a decompression bomb),
and decoding a legitimate one that large takes tens of GB along the inference path.  Raise it for a
huge micrograph with ``read_image(path, max_pixels=N)``, ``with pixel_limit(N):`` or the command
line's ``--max-pixels N``.
"""
from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "SUPPORTED_FORMATS", "read_image", "read_mask", "mask_full_scale", "binarize_mask",
           "MASK_POLARITIES", "MAX_PIXELS", "DEFAULT_MAX_PIXELS", "ImageTooLargeError", "pixel_limit", "image_header_size"]

#: File suffixes read by :func:`read_image` (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SUPPORTED_FORMATS = "PNG, JPEG, TIFF (8/16-bit, gray or RGB, float) and BMP"
#: What the bright (= 1) pixels of a mask file mean: ``"grain"`` interior (ExONE) or ``"boundary"`` lines.
MASK_POLARITIES = ("grain", "boundary")

PathLike = Union[str, Path]

#: The default of :data:`MAX_PIXELS`.
DEFAULT_MAX_PIXELS = 100_000_000
#: Images declaring more pixels (H x W) than this are refused before decoding (see the module docstring).
MAX_PIXELS = DEFAULT_MAX_PIXELS
_PIL_LIMIT_LOCK = threading.Lock()


class ImageTooLargeError(ValueError):
    """The image header declares more pixels than the limit (``max_pixels`` / ``--max-pixels``)."""


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Within the block, :func:`read_image` refuses images over ``max_pixels`` pixels (instead of MAX_PIXELS)."""
    global MAX_PIXELS
    old, MAX_PIXELS = MAX_PIXELS, _check_limit(max_pixels)
    try:
        yield
    finally:
        MAX_PIXELS = old


def _check_limit(max_pixels: object) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int (pixels, H x W), got {max_pixels!r}")
    return max_pixels


def _limit_error(path: Path, shape: Tuple[int, ...], limit: int, what: str = "") -> ImageTooLargeError:
    h, w = int(shape[0]), int(shape[1])
    return ImageTooLargeError(
        f"image {path} declares {w}x{h} = {h * w:,} pixels{what}, over the limit of {limit:,}: not decoded. "
        "If it is a real micrograph, raise the limit (--max-pixels N, or read_image(path, max_pixels=N))")


@contextlib.contextmanager
def _pillow_unlimited() -> Iterator[None]:
    """Pillow's own decompression-bomb check off while a header is read (the caller checks the size)."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def image_header_size(path: PathLike) -> Optional[Tuple[int, int]]:
    """(H, W) declared by an image file's header, without decoding the pixels; None when unreadable."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                page = tif.pages[0]
                return int(page.imagelength), int(page.imagewidth)
        from PIL import Image

        with _pillow_unlimited(), Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except Exception:  # not an image, or a format only the full decoder understands
        return None


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


def _read_tiff(path: Path, limit: int) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            shape = (int(page.imagelength), int(page.imagewidth))
            values = math.prod(int(n) for n in tif.series[0].shape) if tif.series else 0
            if shape[0] * shape[1] > limit:
                raise _limit_error(path, shape, limit)
            if values > 4 * limit:  # a stack of pages, or many samples per pixel
                raise _limit_error(path, shape, limit, f" in a series of {values:,} values")
            return np.asarray(tif.asarray())
    except ImageTooLargeError:
        raise
    except Exception as err:  # corrupt or not a TIFF
        raise _unsupported(path, f"{type(err).__name__}: {err}") from err


def _read_pillow(path: Path, limit: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with _pillow_unlimited():
            im = Image.open(path)  # reads the header only
        with im:
            if im.size[0] * im.size[1] > limit:
                raise _limit_error(path, (im.size[1], im.size[0]), limit)
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


def read_image(path: PathLike, max_pixels: Optional[int] = None) -> np.ndarray:
    """Read a micrograph as an (H, W) or (H, W, 3) array, keeping its dtype (uint8, uint16 or float).

    Raises FileNotFoundError when ``path`` does not exist, :class:`ImageTooLargeError` when its header
    declares more than ``max_pixels`` pixels (default :data:`MAX_PIXELS`; checked before decoding) and
    ValueError (naming the file and the supported formats) when it cannot be decoded.
    """
    limit = _check_limit(MAX_PIXELS if max_pixels is None else max_pixels)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"image file {path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise _unsupported(path, f"unsupported file extension {path.suffix!r}")
    if suffix in (".tif", ".tiff"):
        arr = _read_tiff(path, limit)
    else:
        arr = _read_pillow(path, limit)
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
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.astype(np.float64).mean(axis=-1)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W) or (H, W, C), got shape {mask.shape}")
    bright = mask > threshold
    return (bright if polarity == "grain" else ~bright).astype(np.uint8)


def check_mask_threshold(threshold: Any) -> float:
    """The mask threshold of :func:`read_mask`, checked: a finite number in [0, 255)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 0 <= threshold < 255:
        raise ValueError(f"mask threshold must be a number in [0, 255) on the 8-bit scale (127: mid-grey), "
                         f"got {threshold!r}")
    return float(threshold)


def read_mask(path: PathLike, threshold: float = 127, polarity: str = "grain") -> np.ndarray:
    """Read a mask file as a {0, 1} uint8 (H, W) array with 1 = grain interior.

    ``polarity="grain"``: the file's bright pixels are grain interior (the ExONE convention: white =
    grain, black = boundary); ``polarity="boundary"``: the file's bright pixels are boundary lines, so
    they become 0.  The threshold (127 by default) removes the mid-grey JPEG artefacts.  It is on the
    8-bit scale whatever the file's depth: a 16-bit mask is cut at ``threshold * 257``, a float mask in
    [0, 1] at ``threshold / 255``.  A mask holding only the values 0 and 1 (a label image, not a
    black-and-white picture) reads 1 as bright.
    """
    return mask_from_array(read_image(path), threshold=threshold, polarity=polarity)


def mask_full_scale(mask: np.ndarray) -> float:
    """The value of a white pixel in ``mask`` as :func:`read_image` returns it: 65535 for 16-bit files, 1.0
    for float maps within [0, 1], else 255 (8-bit, or a float map on the 8-bit scale)."""
    if mask.dtype == np.uint16:
        return 65535.0
    if mask.dtype.kind == "f" and (float(mask.max()) if mask.size else 0.0) <= 1.0:
        return 1.0
    return 255.0


def mask_from_array(mask: np.ndarray, threshold: float = 127, polarity: str = "grain") -> np.ndarray:
    """:func:`read_mask` of an array as :func:`read_image` returns it (the file's own depth and dtype):
    ``threshold`` is on the 8-bit scale for every depth; a mask of 0s and 1s reads 1 as white."""
    threshold = check_mask_threshold(threshold) * mask_full_scale(mask) / 255.0
    if mask.dtype.kind in "uib" and mask.size and float(mask.max()) == 1.0 and np.isin(mask, (0, 1)).all():
        threshold = 0.5
    return binarize_mask(mask, threshold=threshold, polarity=polarity)
