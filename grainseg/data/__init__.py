"""Data: reading micrographs and masks, the paper's preprocessing and augmentations, datasets.

The synthetic Voronoi generator lives in :mod:`grainseg.data.synthetic` (imported on demand).
"""
from .io import read_image, read_mask  # noqa: F401
from .transforms import PairedAugment, preprocess_image, preprocess_mask  # noqa: F401
from .datasets import SegmentationDataset, find_pairs, load_splits  # noqa: F401

__all__ = [
    "read_image", "read_mask", "preprocess_image", "preprocess_mask", "PairedAugment",
    "SegmentationDataset", "find_pairs", "load_splits",
]
