"""Exporting a trained checkpoint as a compact half-precision copy (how the embedded default was made).

``export_half(src, dst)`` loads a ``save_pretrained`` directory, casts the floating-point weights to
float16 and writes config.json, model.safetensors and a model card to ``dst`` (as a whole: ``dst`` is
replaced in one rename once the copy is complete).  ``from_pretrained``
loads such a copy into a float32 model (the values are cast back on loading).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

__all__ = ["export_half"]


def export_half(
    src: Union[str, Path],
    dst: Union[str, Path],
    *,
    metrics: Optional[Mapping[str, float]] = None,
    dataset: Optional[str] = None,
    overwrite: bool = False,
    max_bytes: Optional[int] = None,
) -> Path:
    """Write a float16 copy of the model saved in ``src`` to ``dst``; returns the weights file.

    ``max_bytes`` (e.g. 15 MB) raises ValueError when the weights file would be larger.
    """
    from grainseg._atomic import atomic_directory
    from grainseg.models import from_pretrained
    from grainseg.models.base import check_can_save
    from grainseg.models.loading import WEIGHTS_NAME

    model = from_pretrained(src).half()
    dst = Path(dst)
    check_can_save(dst, overwrite)
    with atomic_directory(dst) as tmp:  # dst is replaced only once the copy is complete and within max_bytes
        model.save_pretrained(tmp, metrics=metrics, dataset=dataset, overwrite=True)
        size = (tmp / WEIGHTS_NAME).stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"{dst / WEIGHTS_NAME} would be {size} bytes, over the limit of {max_bytes} "
                             "(nothing was written)")
    return dst / WEIGHTS_NAME
