"""``grainseg`` command line: ``grainseg <command> ...``.

Each command is a module in this package with ``add_parser(subparsers)`` that registers its
sub-parser and sets ``func`` (called with the parsed args, returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import List, Optional

#: Command modules, in the order ``grainseg --help`` lists them.
COMMANDS = ("predict", "train", "evaluate", "models", "bench")


def build_parser() -> argparse.ArgumentParser:
    from grainseg import __version__

    parser = argparse.ArgumentParser(prog="grainseg", description="Grain segmentation of metal micrographs.")
    parser.add_argument("--version", action="version", version=f"grainseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
