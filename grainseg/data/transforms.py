"""Image preprocessing (the one path shared by evaluation and inference) and paired augmentations.

:func:`preprocess_image` applies a model's ``preprocessing`` record (see
:mod:`grainseg.data.preprocessing`): channel conversion to ``in_chans``, the named
normalisation (``"minmax"``: per-image min-max to [0, 1], the paper's) and a bilinear resize to
``input_size``.  The dataset's evaluation transform and ``grainseg.predict_proba`` both call it, so
every caller feeds the network exactly what the evaluation measured.

:class:`PairedAugment` applies the training augmentations (flips, 90-degree rotations, small
rotations, brightness / contrast) identically to an image and its mask, drawing its randomness from a
``torch.Generator`` so runs are reproducible.  Optional robustness steps (``extra=``, off by default,
:data:`EXTRA_AUGMENTATIONS`): magnification jitter (``scale``), elastic deformation, intensity
inversion, greyscale, colour jitter, gamma, blur, noise and JPEG artefacts.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .preprocessing import NORMALIZATIONS, normalize_preprocessing

__all__ = [
    "NORMALIZATIONS",
    "to_chw_tensor",
    "match_channels",
    "normalize_image",
    "resize_image",
    "resize_mask",
    "preprocess_image",
    "preprocess_mask",
    "image_to_input",
    "mask_to_target",
    "grow_boundary",
    "check_boundary_grow",
    "boundary_width",
    "PairedAugment",
    "EXTRA_AUGMENTATIONS",
    "parse_extra",
    "gaussian_blur",
    "jpeg_roundtrip",
]

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
    return image_to_input(image, normalize_preprocessing(preprocessing), in_chans)


def preprocess_mask(mask: ArrayLike, preprocessing: Optional[Mapping[str, Any]] = None) -> Tensor:
    """{0, 1} (H, W) mask -> float32 (1, H', W'), resized like :func:`preprocess_image` resizes the image."""
    return mask_to_target(mask, normalize_preprocessing(preprocessing))


def image_to_input(image: ArrayLike, prep: Mapping[str, Any], in_chans: int) -> Tensor:
    """:func:`preprocess_image` with a record already normalised by ``normalize_preprocessing`` (as
    models and datasets hold it), so it is not normalised again for every image."""
    x = match_channels(to_chw_tensor(image), in_chans)
    x = normalize_image(x, prep["normalize"])
    if prep["input_size"] is not None:
        x = resize_image(x, prep["input_size"])
    return x.unsqueeze(0).contiguous()


def mask_to_target(mask: ArrayLike, prep: Mapping[str, Any]) -> Tensor:
    """:func:`preprocess_mask` with a record already normalised by ``normalize_preprocessing``."""
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
    if m.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(m.shape)}")
    m = (m > 0).to(torch.float32).unsqueeze(0)
    if prep["input_size"] is not None:
        m = resize_mask(m, prep["input_size"])
    return m


def check_boundary_grow(px: Any, name: str = "boundary_grow") -> int:
    """``px`` as a boundary growth in pixels; ValueError naming ``name`` unless it is an int >= 0."""
    if isinstance(px, bool) or not isinstance(px, (int, np.integer)) or px < 0:
        raise ValueError(f"{name} (pixels added to each side of a label's boundaries) must be an int >= 0, "
                         f"got {px!r}")
    return int(px)


def grow_boundary(mask: Tensor, px: int) -> Tensor:
    """Widen the boundary (0) class of a {0, 1} (..., H, W) grain-interior target by ``px`` pixels on each
    side (dilation by a disk of radius ``px``; beyond the border counts as grain).

    For labels drawn with thinner lines than a model learnt: fine-tuning on 3 px lines teaches a model
    trained on 9 px bands to draw thin, gappy boundaries, and a gap merges two grains.  ``px`` = 0 returns
    ``mask`` itself."""
    px = check_boundary_grow(px, "px")
    if not torch.is_tensor(mask) or mask.dim() < 2:
        raise ValueError(f"mask must be a (..., H, W) tensor, got {type(mask).__name__}"
                         f"{'' if not torch.is_tensor(mask) else ' of shape ' + str(tuple(mask.shape))}")
    if px == 0:
        return mask
    r = torch.arange(-px, px + 1, dtype=torch.float32)
    disk = ((r[:, None] ** 2 + r[None, :] ** 2) <= px * px + px).to(torch.float32)  # px^2 + px: a round disk
    shape = mask.shape
    boundary = (mask.reshape(-1, 1, *shape[-2:]) <= 0.5).to(torch.float32)
    grown = F.conv2d(boundary, disk[None, None], padding=px) > 0.5
    return (~grown).to(mask.dtype).reshape(shape)


def boundary_width(masks: Iterable[ArrayLike]) -> Optional[float]:
    """Mean width in pixels of the boundary (0) class of {0, 1} grain-interior masks (each (H, W) or
    (1, H, W)): its area over the length of its skeleton, pooled over the masks.  None when they hold no
    boundary.  The bundled default learnt bands about 9 px wide at its 352 px input; lines drawn with a
    1-pixel pen and resized measure 2-5 px."""
    from skimage.morphology import skeletonize

    area = length = 0
    for m in masks:
        m = np.asarray(m.detach().cpu() if torch.is_tensor(m) else m)
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.ndim != 2:
            raise ValueError(f"masks must be (H, W) or (1, H, W), got shape {m.shape}")
        b = m <= 0.5
        area += int(b.sum())
        length += int(skeletonize(b).sum()) if b.any() else 0
    return area / length if length else None


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
        extra: Sequence[str] = (),
        extra_p: float = 0.5,
        scale_range: Tuple[float, float] = (0.75, 1.33),
        elastic_alpha: float = 4.0,
        elastic_grid: int = 4,
        gamma_range: Tuple[float, float] = (0.67, 1.5),
        blur_sigma: Tuple[float, float] = (0.3, 1.5),
        noise_std: float = 0.05,
        colour: float = 0.1,
        jpeg_quality: Tuple[int, int] = (30, 90),
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
        self.extra = parse_extra(extra)
        if not 0.0 <= float(extra_p) <= 1.0:
            raise ValueError(f"extra_p must be a probability in [0, 1], got {extra_p!r}")
        self.extra_p = float(extra_p)
        for name, (lo, hi) in (("scale_range", scale_range), ("gamma_range", gamma_range), ("blur_sigma", blur_sigma)):
            if not 0 < float(lo) <= float(hi):
                raise ValueError(f"{name} must be a (low, high) range of positive numbers, got {(lo, hi)!r}")
        if not 1 <= int(jpeg_quality[0]) <= int(jpeg_quality[1]) <= 100:
            raise ValueError(f"jpeg_quality must be a (low, high) range in 1..100, got {jpeg_quality!r}")
        if float(elastic_alpha) < 0 or int(elastic_grid) < 2 or float(noise_std) < 0 or float(colour) < 0:
            raise ValueError("elastic_alpha, noise_std and colour must be >= 0 and elastic_grid >= 2")
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.elastic_alpha, self.elastic_grid = float(elastic_alpha), int(elastic_grid)
        self.gamma_range = (float(gamma_range[0]), float(gamma_range[1]))
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.noise_std, self.colour = float(noise_std), float(colour)
        self.jpeg_quality = (int(jpeg_quality[0]), int(jpeg_quality[1]))

    def __repr__(self) -> str:
        return (f"PairedAugment(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
                f"rotate_deg={self.rotate_deg}, rotate_p={self.rotate_p}, brightness={self.brightness}, "
                f"contrast={self.contrast}, photometric_p={self.photometric_p}, extra={list(self.extra)}, "
                f"extra_p={self.extra_p})")

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
        # the extra (robustness) steps draw from the generator only when enabled, so runs without them
        # see exactly the stream they saw before the steps existed
        for name in EXTRA_ORDER:
            if name in self.extra and self._u(g) < self.extra_p:
                image, mask = getattr(self, f"_{name}")(image, mask, g)
        return image.contiguous(), mask.contiguous()

    # ------------------------------------------------------------------ extra steps (image in [0, 1])
    def _range(self, lo: float, hi: float, g: Optional[torch.Generator], log: bool = False) -> float:
        u = self._u(g)
        if log:
            return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return lo + u * (hi - lo)

    def _scale(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Magnification jitter: zoom about the centre by s (> 1 enlarges the grains), reflected borders."""
        s = self._range(*self.scale_range, g, log=True)
        theta = torch.tensor([[1.0 / s, 0.0, 0.0], [0.0, 1.0 / s, 0.0]], dtype=torch.float32)
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, *image.shape[-2:]], align_corners=False)
        return _warp_pair(image, mask, grid)

    def _elastic(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Smooth random displacement (a ``elastic_grid`` x ``elastic_grid`` field of up to ``elastic_alpha``
        px, upsampled bicubically) applied to image and mask."""
        h, w = image.shape[-2:]
        k = self.elastic_grid
        coarse = torch.randn((1, 2, k, k), generator=g) * self.elastic_alpha
        disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]  # (2, h, w) pixels
        ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h)
        xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx + disp[1] * 2 / w, gy + disp[0] * 2 / h], -1).unsqueeze(0)
        return _warp_pair(image, mask, grid)

    def _invert(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Contrast polarity: bright boundaries become dark and vice versa (the mask stays grain interior)."""
        return (1.0 - image).clamp(0.0, 1.0), mask

    def _grey(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Colour to grey (the channel mean in every channel); a grey image is unchanged."""
        return image.mean(0, keepdim=True).expand_as(image).contiguous(), mask

    def _colour(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Colour jitter: a gain and an offset per channel, each up to ``colour``."""
        c = image.shape[0]
        gain = 1.0 + (2 * torch.rand((c, 1, 1), generator=g) - 1) * self.colour
        offset = (2 * torch.rand((c, 1, 1), generator=g) - 1) * self.colour
        return (image * gain + offset).clamp(0.0, 1.0), mask

    def _gamma(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Gamma (log-uniform in ``gamma_range``): a non-linear tone change."""
        return image.clamp(0.0, 1.0).pow(self._range(*self.gamma_range, g, log=True)), mask

    def _blur(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Gaussian blur, sigma uniform in ``blur_sigma`` px (defocus, a lower resolution)."""
        return gaussian_blur(image, self._range(*self.blur_sigma, g)), mask

    def _noise(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """Additive Gaussian noise, std uniform in [0, ``noise_std``] (shot / detector noise)."""
        std = self._u(g) * self.noise_std
        return (image + std * torch.randn(image.shape, generator=g)).clamp(0.0, 1.0), mask

    def _jpeg(self, image: Tensor, mask: Tensor, g: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
        """JPEG compression artefacts: encode and decode at a quality uniform in ``jpeg_quality``."""
        quality = int(round(self._range(*map(float, self.jpeg_quality), g)))
        return jpeg_roundtrip(image, quality), mask


#: The optional robustness steps of :class:`PairedAugment` (``extra=``), in the order they run:
#: geometric first (image and mask), then photometric (image only).
EXTRA_ORDER = ("scale", "elastic", "invert", "grey", "colour", "gamma", "blur", "noise", "jpeg")
EXTRA_AUGMENTATIONS = EXTRA_ORDER
_EXTRA_ALIASES = {"color": "colour", "gray": "grey", "greyscale": "grey", "grayscale": "grey"}


def parse_extra(extra: Union[str, Sequence[str], None]) -> Tuple[str, ...]:
    """Names of extra augmentations from a list or a comma-separated string (``"all"``: every one),
    checked and in :data:`EXTRA_ORDER` order."""
    if extra is None:
        return ()
    items = extra.split(",") if isinstance(extra, str) else list(extra)
    names = set()
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name == "all":
            names.update(EXTRA_ORDER)
            continue
        name = _EXTRA_ALIASES.get(name, name)
        if name not in EXTRA_ORDER:
            raise ValueError(f"unknown extra augmentation {item!r}; choose from {', '.join(EXTRA_ORDER)} (or all)")
        names.add(name)
    return tuple(n for n in EXTRA_ORDER if n in names)


def _warp_pair(image: Tensor, mask: Tensor, grid: Tensor) -> Tuple[Tensor, Tensor]:
    """Sample image and mask at ``grid`` (normalised coordinates): bilinear, reflected borders; the mask
    is re-binarised at 0.5 (the same grid, so it stays aligned with the image)."""
    kw = dict(mode="bilinear", padding_mode="reflection", align_corners=False)
    img = F.grid_sample(image.unsqueeze(0).to(torch.float32), grid, **kw)[0]
    m = F.grid_sample(mask.unsqueeze(0).to(torch.float32), grid, **kw)[0]
    return img.to(image.dtype), (m > 0.5).to(mask.dtype)


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of a (C, H, W) tensor (radius 3 sigma, reflected borders)."""
    if sigma <= 0:
        return image
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, (min(image.shape[-2:]) - 1) or 1)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = image.shape[0]
    pad = "reflect" if min(image.shape[-2:]) > r else "replicate"
    out = F.pad(image.unsqueeze(0), (r, r, r, r), mode=pad)
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return out[0]


def jpeg_roundtrip(image: Tensor, quality: int) -> Tensor:
    """A (1 or 3, H, W) image in [0, 1] encoded as JPEG at ``quality`` and decoded (libjpeg is
    deterministic, so this is reproducible)."""
    import io

    from PIL import Image

    arr = (image.clamp(0.0, 1.0) * 255 + 0.5).to(torch.uint8)
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    dec = np.asarray(Image.open(buf).convert("L" if image.shape[0] == 1 else "RGB"), dtype=np.float32) / 255.0
    out = torch.from_numpy(dec.copy())
    return (out.unsqueeze(0) if out.dim() == 2 else out.permute(2, 0, 1)).contiguous().to(image.dtype)
