"""``grainseg`` command line: ``grainseg <command> ...``.

Each command is a module in this package with ``add_parser(subparsers)`` that registers its
sub-parser and sets ``func`` (called with the parsed args, returning an exit code).  The commands that
read images also get ``--max-pixels`` here (the decoding limit of :func:`grainseg.data.io.read_image`).

Errors: run as the program (``grainseg ...``, ``python -m grainseg``: ``main()`` without ``argv``), a
user error (a bad value, a missing or existing file, a missing extra) prints one ``error:`` line and
exits 2, a non-finite training loss exits 1, Ctrl-C exits 130, and warnings print as one line each;
``GRAINSEG_TRACEBACK=1`` shows the traceback instead.  Called from Python with ``argv``, the exception
propagates (``catch_errors=True`` gives the program's behaviour).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from typing import List, Optional

#: Command modules, in the order ``grainseg --help`` lists them.
COMMANDS = ("predict", "validate", "train", "evaluate", "models", "hub")
#: Commands that read images: they take ``--max-pixels``.
IMAGE_COMMANDS = ("predict", "validate", "train", "evaluate")
#: Exceptions that mean the user asked for something that cannot be done (exit 2, one line).
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, ImportError)


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of pixels, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of pixels, got {text!r}")
    return value


def _add_common_options(name: str, parser: argparse.ArgumentParser) -> None:
    if name in IMAGE_COMMANDS:
        from grainseg.data.io import DEFAULT_MAX_PIXELS

        parser.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                            help="refuse images whose header declares more than N pixels, before decoding "
                                 f"(default: {DEFAULT_MAX_PIXELS:,}; raise it for huge micrographs)")


def build_parser() -> argparse.ArgumentParser:
    from grainseg._version import __version__

    parser = argparse.ArgumentParser(prog="grainseg", description="Grain segmentation of metal micrographs.")
    parser.add_argument("--version", action="version", version=f"grainseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f"{__name__}.{name}").add_parser(sub)
        if command is not None:
            _add_common_options(name, command)
    return parser


@contextlib.contextmanager
def _one_line_warnings(prog: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr if file is None else file)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: Optional[List[str]] = None, *, catch_errors: Optional[bool] = None) -> int:
    """Run a command; returns its exit code.  See the module docstring for how errors are reported."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    catch = (argv is None if catch_errors is None else catch_errors) and not os.environ.get("GRAINSEG_TRACEBACK")
    from grainseg._allocator import keep_freed_memory

    keep_freed_memory()  # glibc: freed tensors are reused, not returned to the system (see grainseg._allocator)
    prog = f"grainseg {args.command}"
    with contextlib.ExitStack() as stack:
        if getattr(args, "max_pixels", None):
            from grainseg.data.io import pixel_limit

            stack.enter_context(pixel_limit(args.max_pixels))
        if catch:
            stack.enter_context(_one_line_warnings(prog))
        from grainseg.models.base import StateDictMismatchError

        try:
            return int(args.func(args) or 0)
        except (*USER_ERRORS, StateDictMismatchError, FloatingPointError, ConnectionError) as err:
            if not catch:
                raise
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 1 if isinstance(err, (FloatingPointError, ConnectionError)) else 2  # 1: it failed, 2: usage
        except KeyboardInterrupt:
            if not catch:
                raise
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
