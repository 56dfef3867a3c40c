"""Grain measurements from a segmentation mask: regionprops tables, ASTM E112 G, the :class:`GrainReport`."""
from .astm import (  # noqa: F401
    g_from_grains_per_mm2,
    g_from_intercept_mm,
    grains_per_mm2_from_g,
    intercept,
    intercept_mm_from_g,
    jeffries_count,
    planimetric,
)
from .instances import GRAIN_METHODS, segment_grains  # noqa: F401
from .intercepts import anisotropy, e112_pattern, intercept_from_counts, line_grid, pattern_intercepts  # noqa: F401
from .report import GrainReport  # noqa: F401
from .stats import column_names, grain_table, label_interiors, table_to_csv, tessellate_grains  # noqa: F401

__all__ = [
    "GrainReport",
    "segment_grains",
    "GRAIN_METHODS",
    "e112_pattern",
    "line_grid",
    "pattern_intercepts",
    "intercept_from_counts",
    "anisotropy",
    "label_interiors",
    "tessellate_grains",
    "grain_table",
    "table_to_csv",
    "column_names",
    "planimetric",
    "intercept",
    "jeffries_count",
    "g_from_grains_per_mm2",
    "g_from_intercept_mm",
    "grains_per_mm2_from_g",
    "intercept_mm_from_g",
]
