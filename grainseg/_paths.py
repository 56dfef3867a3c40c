"""Path helpers shared by the commands that read and write user folders."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Union

__all__ = ["is_within", "removed_if_left_empty"]


def is_within(path: Union[str, Path], folder: Union[str, Path]) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symlinks resolved; neither need exist)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def removed_if_left_empty(folder: Union[str, Path]) -> Iterator[None]:
    """Run the body; if ``folder`` did not exist before it and is an empty folder after it (the run failed,
    or wrote nothing), remove it, so that a failed command leaves no empty output folder behind."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
