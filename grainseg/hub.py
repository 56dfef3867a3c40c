"""Backwards-compatible names for loading saved models; the code lives in :mod:`grainseg.models.loading`
(finding the files) and :meth:`grainseg.models.SegmentationModel.from_pretrained` (building the model).

``from_pretrained`` here is ``grainseg.from_pretrained`` (``SegmentationModel.from_pretrained``), and
``load_pretrained(name, cls=Cls, ...)`` is ``Cls.from_pretrained(name, ...)``.
"""
from __future__ import annotations

from grainseg.models.base import SegmentationModel
from grainseg.models.loading import CONFIG_NAME, WEIGHTS_NAME, PretrainedNotFoundError, read_config, resolve_pretrained

__all__ = ["from_pretrained", "load_pretrained", "resolve_pretrained", "PretrainedNotFoundError", "read_config",
           "CONFIG_NAME", "WEIGHTS_NAME"]

from_pretrained = SegmentationModel.from_pretrained


def load_pretrained(name_or_path, *, cls=None, **kwargs):
    """``(cls or SegmentationModel).from_pretrained(name_or_path, **kwargs)``."""
    return (cls or SegmentationModel).from_pretrained(name_or_path, **kwargs)
