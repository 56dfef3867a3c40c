"""Writing a whole folder atomically: build it as a hidden sibling, then swap it in with one rename.

:func:`atomic_directory` yields an empty temporary folder next to ``target``; when the ``with`` body
finishes, the folder replaces ``target`` in one step (``renameat2(RENAME_EXCHANGE)`` on Linux, else two
renames undone on failure), so an interrupt (Ctrl-C, an exception, a full disk) at any point leaves
either the old folder complete or the new one complete, never a mix.  Files of the old folder that the
new one does not write are carried over (hard links, else copies).  The files written get the usual
permissions (``0666 & ~umask``; a temporary folder would otherwise make them 0700 / 0600).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Union

__all__ = ["atomic_directory", "default_mode"]


def default_mode(directory: bool = False) -> int:
    """Permission bits a new file (0666) or folder (0777) gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(ctypes.get_errno(), f"cannot swap {a} and {b}: {os.strerror(ctypes.get_errno())}")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path) -> None:
    """Bring the entries of ``old`` that ``new`` lacks into ``new`` (other files the user keeps there)."""
    for entry in old.iterdir():
        dest = new / entry.name
        if dest.exists() or dest.is_symlink():
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), dest)
        elif entry.is_dir():
            shutil.copytree(entry, dest, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(dest))


def _swap_in(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if not target.exists():
            os.rename(old, target)  # put the old folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: Union[str, Path]) -> Iterator[Path]:
    """Yield an empty sibling folder of ``target``; on success it replaces ``target`` atomically.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and ``target`` is
    left as it was.  ``target`` may not exist yet; it must not be a file.
    """
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        file_mode = default_mode()
        for path in tmp.rglob("*"):
            if path.is_file() and not path.is_symlink():
                os.chmod(path, file_mode)
        dir_mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else default_mode(directory=True)
        os.chmod(tmp, dir_mode)
        if target.is_dir():
            _carry_over(target, tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
