"""Image preprocessing (the one path shared by evaluation and inference) and paired augmentations.

:func:`preprocess_image` applies a model's ``preprocessing`` record (see
``grainseg.models.base.DEFAULT_PREPROCESSING``): channel conversion to ``in_chans``, the named
normalisation (``"minmax"``: per-image min-max to [0, 1], the paper's) and a bilinear resize to
``input_size``.  The dataset's evaluation transform and ``grainseg.predict_proba`` both call it, so
every caller feeds the network exactly what the evaluation measured.

:class:`PairedAugment` applies the training augmentations (flips, 90-degree rotations, small
rotations, brightness / contrast) identically to an image and its mask, drawing its randomness from a
``torch.Generator`` so runs are reproducible.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "NORMALIZATIONS",
    "to_chw_tensor",
    "match_channels",
    "normalize_image",
    "resize_image",
    "resize_mask",
    "preprocess_image",
    "preprocess_mask",
    "PairedAugment",
]

#: Normalisations understood by :func:`normalize_image`.
NORMALIZATIONS = ("minmax", "none")

ArrayLike = Union[np.ndarray, Tensor]


def to_chw_tensor(image: ArrayLike) -> Tensor:
    """(H, W) or (H, W, C) image (or a (C, H, W) tensor) -> float32 (C, H, W) tensor, values unchanged."""
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "uifb":
            raise ValueError(f"image must be a numeric array, got dtype {image.dtype}")
        if image.dtype == np.uint16 or image.dtype.kind in "ui" and image.dtype.itemsize > 2:
            image = image.astype(np.float64)  # torch has no uint16/uint32 arithmetic everywhere
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, Tensor):
        t = image.detach()
    else:
        raise ValueError(f"image must be a numpy array or torch tensor, got {type(image).__name__}")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    elif t.dim() == 3 and t.shape[-1] in (1, 3, 4):  # (H, W, C), the numpy / Pillow layout
        t = t.permute(2, 0, 1)
    elif not (t.dim() == 3 and t.shape[0] in (1, 3)):  # else it must already be (C, H, W)
        raise ValueError(f"image must be (H, W), (H, W, C) or (C, H, W) with C in 1, 3; got shape {tuple(t.shape)}")
    if t.shape[0] == 4:
        t = t[:3]
    if t.shape[0] not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels, got shape {tuple(t.shape)}")
    if t.shape[-1] < 1 or t.shape[-2] < 1:
        raise ValueError(f"image is empty: shape {tuple(t.shape)}")
    return t.to(torch.float32).contiguous()


def match_channels(x: Tensor, in_chans: int) -> Tensor:
    """(C, H, W) -> (in_chans, H, W): gray is repeated, RGB averaged to gray when ``in_chans`` is 1."""
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    c = x.shape[0]
    if c == in_chans:
        return x
    if c == 1:
        return x.expand(in_chans, -1, -1).contiguous()
    if in_chans == 1:
        return x.mean(dim=0, keepdim=True)
    raise ValueError(f"cannot convert a {c}-channel image to in_chans={in_chans} (only 1 <-> N is defined)")


def normalize_image(x: Tensor, method: str = "minmax") -> Tensor:
    """Normalise a float image: ``"minmax"`` maps its own min..max to [0, 1] (constant -> 0); ``"none"`` keeps it."""
    if method == "minmax":
        lo, hi = x.min(), x.max()
        span = hi - lo
        if not torch.isfinite(span):
            raise ValueError("image holds NaN or infinite values; cannot min-max normalise it")
        return (x - lo) / span if span > 0 else torch.zeros_like(x)
    if method == "none":
        return x
    raise ValueError(f"preprocessing['normalize'] must be one of {NORMALIZATIONS}, got {method!r}")


def _size_pair(size: Any, name: str) -> Tuple[int, int]:
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"{name} must be [height, width] positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def resize_image(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of a (C, H, W) or (B, C, H, W) float tensor (antialiased when shrinking)."""
    h, w = _size_pair(size, "size")
    if tuple(x.shape[-2:]) == (h, w):
        return x
    squeeze = x.dim() == 3
    x4 = x.unsqueeze(0) if squeeze else x
    shrink = h < x4.shape[-2] or w < x4.shape[-1]
    out = F.interpolate(x4, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return out[0] if squeeze else out


def resize_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Resize a {0, 1} (1, H, W) or (H, W) mask: bilinear, then thresholded at 0.5 (stays binary, aligned)."""
    squeeze = mask.dim() == 2
    m = mask.unsqueeze(0) if squeeze else mask
    m = m.to(torch.float32)
    if tuple(m.shape[-2:]) != tuple(_size_pair(size, "size")):
        m = (resize_image(m, size) > 0.5).to(torch.float32)
    return m[0] if squeeze else m


def preprocess_image(image: ArrayLike, preprocessing: Optional[Mapping[str, Any]], in_chans: int) -> Tensor:
    """Image (H, W[, C], any dtype) -> float32 (1, in_chans, H', W') network input.

    Converts channels to ``in_chans``, normalises with ``preprocessing["normalize"]`` ("minmax": per-image
    min-max to [0, 1]) and resizes (bilinear) to ``preprocessing["input_size"]`` when it is set.
    ``preprocessing`` None means the models' default record.
    """
    from grainseg.models.base import normalize_preprocessing

    prep = normalize_preprocessing(preprocessing)
    x = match_channels(to_chw_tensor(image), in_chans)
    x = normalize_image(x, prep["normalize"])
    if prep["input_size"] is not None:
        x = resize_image(x, prep["input_size"])
    return x.unsqueeze(0).contiguous()


def preprocess_mask(mask: ArrayLike, preprocessing: Optional[Mapping[str, Any]] = None) -> Tensor:
    """{0, 1} (H, W) mask -> float32 (1, H', W'), resized like :func:`preprocess_image` resizes the image."""
    from grainseg.models.base import normalize_preprocessing

    prep = normalize_preprocessing(preprocessing)
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
    if m.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(m.shape)}")
    m = (m > 0).to(torch.float32).unsqueeze(0)
    if prep["input_size"] is not None:
        m = resize_mask(m, prep["input_size"])
    return m


def _rotate(x: Tensor, angle_deg: float, mode: str) -> Tensor:
    """Rotate a (C, H, W) tensor about its centre by ``angle_deg`` (reflection at the borders)."""
    c, h, w = x.shape
    a = math.radians(angle_deg)
    cos, sin = math.cos(a), math.sin(a)
    # affine_grid works in normalised coords; correct for aspect ratio so the rotation is rigid in pixels
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta.unsqueeze(0), [1, c, h, w], align_corners=False)
    return F.grid_sample(x.unsqueeze(0), grid, mode=mode, padding_mode="reflection", align_corners=False)[0]


class PairedAugment:
    """Random flips, 90-degree rotations, small rotations and brightness / contrast, the same for image and mask.

    Geometric steps apply to both tensors; photometric steps (brightness, contrast) to the image only.
    Call with ``(image (C, H, W), mask (1, H, W), generator)``; the generator makes it reproducible.
    """

    def __init__(
        self,
        hflip: float = 0.5,
        vflip: float = 0.5,
        rot90: float = 0.5,
        rotate_deg: float = 10.0,
        rotate_p: float = 0.3,
        brightness: float = 0.1,
        contrast: float = 0.1,
        photometric_p: float = 0.5,
    ) -> None:
        for name, p in (("hflip", hflip), ("vflip", vflip), ("rot90", rot90), ("rotate_p", rotate_p),
                        ("photometric_p", photometric_p)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        for name, v in (("rotate_deg", rotate_deg), ("brightness", brightness), ("contrast", contrast)):
            if float(v) < 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        self.hflip, self.vflip, self.rot90 = float(hflip), float(vflip), float(rot90)
        self.rotate_deg, self.rotate_p = float(rotate_deg), float(rotate_p)
        self.brightness, self.contrast, self.photometric_p = float(brightness), float(contrast), float(photometric_p)

    def __repr__(self) -> str:
        return (f"PairedAugment(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
                f"rotate_deg={self.rotate_deg}, rotate_p={self.rotate_p}, brightness={self.brightness}, "
                f"contrast={self.contrast}, photometric_p={self.photometric_p})")

    @staticmethod
    def _u(g: Optional[torch.Generator]) -> float:
        return float(torch.rand((), generator=g))

    def __call__(self, image: Tensor, mask: Tensor, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        if image.dim() != 3 or mask.dim() != 3 or image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"image (C, H, W) and mask (1, H, W) must share H, W; got {tuple(image.shape)} and {tuple(mask.shape)}"
            )
        g = generator
        if self._u(g) < self.hflip:
            image, mask = image.flip(-1), mask.flip(-1)
        if self._u(g) < self.vflip:
            image, mask = image.flip(-2), mask.flip(-2)
        if self._u(g) < self.rot90:
            k = 1 + int(torch.randint(0, 3, (), generator=g))
            if image.shape[-1] == image.shape[-2] or k == 2:
                image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
        if self.rotate_deg > 0 and self._u(g) < self.rotate_p:
            angle = (2 * self._u(g) - 1) * self.rotate_deg
            image = _rotate(image, angle, "bilinear")
            mask = (_rotate(mask.to(torch.float32), angle, "bilinear") > 0.5).to(mask.dtype)
        if (self.brightness > 0 or self.contrast > 0) and self._u(g) < self.photometric_p:
            c = 1.0 + (2 * self._u(g) - 1) * self.contrast
            b = (2 * self._u(g) - 1) * self.brightness
            mean = image.mean()
            image = ((image - mean) * c + mean + b).clamp(0.0, 1.0)
        return image.contiguous(), mask.contiguous()
