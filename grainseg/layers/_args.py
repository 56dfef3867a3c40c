"""Argument checks shared by the model-zoo layers and models (clear ValueErrors naming the argument)."""
from __future__ import annotations

from typing import Any, List, Sequence


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is a positive int (not a bool), else raise ValueError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_int_list(value: Any, name: str, length: int) -> List[int]:
    """Return ``value`` as a list of ``length`` positive ints, else raise ValueError naming ``name``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != length:
        raise ValueError(f"{name} must be a list of {length} positive ints, got {value!r}")
    return [check_positive_int(v, f"{name}[{i}]") for i, v in enumerate(value)]


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_probability(value: Any, name: str) -> float:
    """Return ``value`` if it is a number in [0, 1), else raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)
