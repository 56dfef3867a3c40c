"""Path helpers shared by the commands that read and write user folders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

__all__ = ["is_within"]


def is_within(path: Union[str, Path], folder: Union[str, Path]) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symlinks resolved; neither need exist)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False
