"""Strict JSON for every record grainseg writes: numpy values as Python ones, NaN / inf as null.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which is not JSON: strict readers
(``JSON.parse``, jq, most other languages) refuse the whole file.  A metric that is undefined for an
image (say HD95 without a boundary) is written as ``null`` instead.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["jsonable", "dumps"]


def jsonable(obj: Any) -> Any:
    """numpy scalars / arrays -> Python; non-finite floats -> None; other objects unchanged."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps(obj: Any, indent: int = 2) -> str:
    """Strict JSON text of ``obj`` (see :func:`jsonable`); objects JSON does not know are written as str()."""
    return json.dumps(jsonable(obj), indent=indent, default=str, allow_nan=False)
