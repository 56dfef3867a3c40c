"""Sliding-window inference with overlapping tiles and Gaussian blending.

:func:`sliding_window` runs a function (a model's forward or ``predict``) on overlapping tiles of an
image of any size, in batches, and blends the tile outputs with a Gaussian weight that is largest at the
tile centre, so predictions near a tile edge (with less context) count less and no seam shows.  An image
that fits in one tile is passed through unchanged, so the result equals a direct call.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ["sliding_window", "gaussian_weights", "tile_starts"]

SizeLike = Union[int, Sequence[int]]


def _pair(value: SizeLike, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be a positive int or (height, width) positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def tile_starts(length: int, tile: int, overlap: float) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``0..length`` with at least ``overlap`` overlap.

    The first tile starts at 0 and the last ends at ``length``; the rest are spread evenly in between.
    A ``length`` not larger than ``tile`` gives one tile at 0.
    """
    if length <= tile:
        return [0]
    stride = max(1, int(math.floor(tile * (1.0 - overlap))))
    n = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def gaussian_weights(size: SizeLike, sigma_scale: float = 0.125, min_weight: float = 1e-3,
                     device: Optional[torch.device] = None) -> Tensor:
    """(h, w) float32 Gaussian blending weights, 1 at the centre, ``sigma = sigma_scale * size``.

    Each 1-D profile is clamped below at ``min_weight`` before their outer product, so every pixel keeps
    some weight (an image border is covered by tile edges only) while the weights stay separable: along
    a border, the tile whose centre is nearer still dominates.
    """
    h, w = _pair(size, "size")
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale!r}")
    if not 0 < min_weight <= 1:
        raise ValueError(f"min_weight must be in (0, 1], got {min_weight!r}")

    def g(n: int) -> Tensor:
        x = torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2
        p = torch.exp(-0.5 * (x / (sigma_scale * n)) ** 2)
        return (p / p.max()).clamp_min(min_weight)

    return torch.outer(g(h), g(w)).to(torch.float32)


def sliding_window(
    image: Tensor,
    fn: Callable[[Tensor], Tensor],
    tile_size: SizeLike,
    overlap: float = 0.25,
    batch_size: int = 4,
    sigma_scale: float = 0.125,
    device: Optional[Union[str, torch.device]] = None,
    amp: Optional[bool] = None,
    progress: Union[bool, Callable[[int], None]] = False,
) -> Tensor:
    """Blend ``fn`` over overlapping tiles of ``image`` ((C, H, W) or (B, C, H, W)); returns (B, K, H, W) (or (K, H, W)) float32.

    ``fn`` maps a (n, C, th, tw) batch to (n, K, th, tw).  Tiles are ``tile_size`` (clipped to the image),
    at least ``overlap`` (0 <= overlap < 1) of a tile apart, run ``batch_size`` at a time on ``device``
    (default: the image's), with float16 autocast when ``amp`` (default: on for CUDA).  The output, on
    the image's device, is the Gaussian-weighted mean of the tile outputs at every pixel.  ``progress``
    True shows a tqdm bar over tiles; a callable is called with the number of tiles done after each batch.
    """
    if not isinstance(image, Tensor):
        raise ValueError(f"image must be a torch tensor (C, H, W) or (B, C, H, W), got {type(image).__name__}")
    squeeze = image.dim() == 3
    x = image.unsqueeze(0) if squeeze else image
    if x.dim() != 4 or x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"image must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    if not (isinstance(overlap, (int, float)) and 0 <= overlap < 1):
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    th, tw = _pair(tile_size, "tile_size")
    b, _, h, w = x.shape
    th, tw = min(th, h), min(tw, w)
    run_device = torch.device(device) if device is not None else x.device
    use_amp = (run_device.type == "cuda") if amp is None else bool(amp)
    autocast = (torch.autocast(run_device.type, dtype=torch.float16 if run_device.type == "cuda" else torch.bfloat16)
                if use_amp else contextlib.nullcontext())

    boxes = [(i, y, xx) for i in range(b) for y in tile_starts(h, th, overlap) for xx in tile_starts(w, tw, overlap)]
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(boxes), desc="tiles", unit="tile", leave=False)
    weight = gaussian_weights((th, tw), sigma_scale, device=x.device)
    out: Optional[Tensor] = None
    norm = torch.zeros((h, w), dtype=torch.float32, device=x.device)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start:start + batch_size]
        tiles = torch.stack([x[i, :, y:y + th, xx:xx + tw] for i, y, xx in chunk]).to(run_device)
        with autocast:
            pred = fn(tiles)
        if pred.dim() != 4 or pred.shape[0] != len(chunk) or tuple(pred.shape[-2:]) != (th, tw):
            raise ValueError(f"fn must return (n, K, {th}, {tw}) for n tiles, got shape {tuple(pred.shape)}")
        pred = pred.to(device=x.device, dtype=torch.float32)
        if out is None:
            out = torch.zeros((b, pred.shape[1], h, w), dtype=torch.float32, device=x.device)
        for k, (i, y, xx) in enumerate(chunk):
            out[i, :, y:y + th, xx:xx + tw] += pred[k] * weight
            if i == 0:  # the weight sum is the same for every image of the batch: count it once
                norm[y:y + th, xx:xx + tw] += weight
        if bar is not None:
            bar.update(len(chunk))
        elif callable(progress):
            progress(start + len(chunk))
    if bar is not None:
        bar.close()
    assert out is not None
    out = out / norm
    return out[0] if squeeze else out
