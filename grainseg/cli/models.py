"""``grainseg models``: the registered models with their parameter count and the paper's Dice.

Parameter counts are for each model's default configuration, counted on the meta device (no memory, no
weight download).  ``--json`` prints the same rows as a JSON list.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

__all__ = ["add_parser", "run", "model_rows", "format_table", "format_pretrained"]


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``grainseg models`` on the dispatcher's sub-parsers."""
    p = subparsers.add_parser("models", help="list the model zoo (parameters, paper Dice)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch filter on model names, e.g. 'vmunet*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
    return p


def model_rows(pattern: Optional[str] = None) -> List[Dict[str, Any]]:
    """One dict per registered model (name, class, params, paper name, paper Dice, description)."""
    from grainseg.models.registry import list_models, model_info

    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        rows.append({
            "name": name,
            "class": info["class_name"],
            "params": info["num_params"],
            "paper_name": info["paper_name"],
            "paper_dice": info["paper_dice"],
            "description": info["description"],
        })
    return rows


def format_table(rows: List[Dict[str, Any]]) -> str:
    """Rows as an aligned text table."""
    header = ("model", "class", "parameters", "paper model", "paper Dice")
    body = [(r["name"], r["class"], f"{r['params']:,}", r["paper_name"] or "-",
             "-" if r["paper_dice"] is None else f"{r['paper_dice']:.2f}") for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = []
    for i, row in enumerate([header] + body):
        cells = [str(c).rjust(w) if j in (2, 4) else str(c).ljust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_pretrained() -> str:
    """The registered pretrained ids, each with its architecture and where its weights come from."""
    from grainseg.models.loading import bundled_dir
    from grainseg.models.registry import list_pretrained, pretrained_info

    lines = ["\npretrained weights (grainseg.from_pretrained(ID), --model ID):"]
    for repo_id in list_pretrained():
        info = pretrained_info(repo_id)
        local = bundled_dir(info["bundled"]) if info.get("bundled") else None
        lines.append(f"  {repo_id}  ({info['model']}; {f'local copy {local}' if local else 'from the Hub'})")
        if info.get("description"):
            lines.append(f"      {info['description']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON); exit code 1 when the pattern matches nothing."""
    from grainseg.models.sam import sam_available

    rows = model_rows(args.pattern)
    if not rows:
        print(f"no registered model matches {args.pattern!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows))
    print("\nparameters: default configuration; paper Dice: the paper's Table I on its own split (reference only)")
    print(format_pretrained())
    if not sam_available():
        print("sam, sam_lora: not installed (pip install 'grainseg[sam]')")
    return 0
