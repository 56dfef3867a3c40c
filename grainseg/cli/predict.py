"""``grainseg predict PATH... [--model NAME|HUB_ID|DIR] [--scale UM_PER_PX] [--out DIR]``.

Segments micrographs (files or folders of PNG / JPEG / TIFF / BMP), measures their grains and writes,
per image, ``<stem>_prob.png`` (16-bit probability), ``_mask.png`` (white = grain interior),
``_overlay.png``, ``_e112.png`` (the E112 test pattern with its boundary crossings), ``_sizes.png``
(grain-size distribution; needs matplotlib, the ``[plot]`` extra), ``_labels.tif`` (grain-interior instance labels), ``_grains.csv`` and
``_summary.json`` (counts, sizes, ASTM E112 G by both methods with 95 % CIs, model id and revision).
Existing files are never replaced without ``--overwrite``.  A bad image prints one ``error:`` line and
the batch goes on; the exit code is 1 when any image failed, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from grainseg._paths import is_within, removed_if_left_empty
from grainseg.cli._grain_args import add_instance_args, add_rescale_arg, add_tta_arg, instance_kwargs, rescale_value

__all__ = ["add_parser", "run", "EXAMPLE_IMAGE", "collect_inputs"]

#: The bundled sample micrograph (our own synthetic one), used by ``--example``.
EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "assets" / "sample_micrograph.png"

PROG = "grainseg predict"
#: Without a terminal, a progress line is printed every this many tiles of one image.
TILE_LINE_EVERY = 100


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``predict`` on the dispatcher's sub-parsers."""
    p = subparsers.add_parser(
        "predict",
        help="segment micrographs and measure their grains (ASTM E112)",
        description="Segment grain micrographs and write probability, mask, overlay, labels, per-grain CSV "
        "and a summary JSON with the ASTM E112 grain size number G per image.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders (PNG, JPEG, TIFF, BMP)")
    p.add_argument("--example", action="store_true", help="run on the bundled sample micrograph")
    p.add_argument("--model", default=None, metavar="NAME|HUB_ID|DIR",
                   help="model directory, registered pretrained id or Hub id (default: the embedded model)")
    p.add_argument("--scale", type=float, default=None, metavar="UM_PER_PX",
                   help="micrometres per pixel at the specimen; needed for um sizes and ASTM E112 G")
    p.add_argument("--units", choices=("auto", "um", "px"), default="auto",
                   help="size units: um needs --scale; auto = um with --scale, px without (default)")
    p.add_argument("--out", default="grainseg_predictions", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--recursive", action="store_true", help="search folders recursively")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_instance_args(p)
    add_tta_arg(p)
    add_rescale_arg(p)
    p.set_defaults(func=run)
    return p


def _error(message: str) -> None:
    """One clear line on stderr."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _looks_like_output(f: Path, stems: set) -> bool:
    """Whether ``f`` is named like an output of :meth:`GrainReport.save` for an image stem in ``stems``."""
    from grainseg.grains.report import OUTPUT_SUFFIXES

    name = f.name.lower()
    return any(name.endswith(sfx) and name[: -len(sfx)] in stems for sfx in OUTPUT_SUFFIXES.values())


def collect_inputs(paths: List[str], recursive: bool = False,
                   out: Optional[Path] = None) -> Tuple[List[Path], List[str], List[str]]:
    """(image files, error lines, note lines): folders expand to their image files; other paths are kept
    as given.

    A named file with another extension is kept, so reading it reports the unsupported format.  A file
    named twice (or named and also found in a named folder) is kept once, where it first appears.  A
    folder's files that are grainseg's own outputs are left out, so that a second run on the same folder
    does not treat the first run's outputs as micrographs: those inside ``out`` when ``out`` lies within
    the folder, and those named ``<stem>_prob.png``, ``<stem>_mask.png``, ... beside an image ``<stem>.*``.
    A note says how many were left out; name such a file explicitly to predict it.
    """
    from grainseg.data.io import IMAGE_EXTENSIONS

    files: List[Path] = []
    errors: List[str] = []
    notes: List[str] = []
    seen = set()

    def add(f: Path) -> None:
        key = os.path.normcase(os.path.realpath(f))
        if key not in seen:
            seen.add(key)
            files.append(f)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(f for f in (path.rglob("*") if recursive else path.iterdir())
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            skip_out = out is not None and is_within(out, path) and not is_within(path, out)
            stems_by_dir: Dict[Path, set] = {}
            for f in found:
                stems_by_dir.setdefault(f.parent, set()).add(f.stem.lower())
            kept = [f for f in found if not (skip_out and is_within(f, out))
                    and not _looks_like_output(f, stems_by_dir[f.parent])]
            if len(kept) < len(found):
                notes.append(f"{path}: left out {len(found) - len(kept)} file(s) that look like grainseg outputs "
                             f"(in --out {out}, or named <image>_prob.png, _mask.png, ... beside <image>); "
                             "name a file to predict it anyway")
            if not found:
                errors.append(f"{path}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            elif not kept:
                errors.append(f"{path}: folder holds only grainseg outputs, no micrographs")
            for f in kept:
                add(f)
        elif path.exists():
            add(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors, notes


def _stems(files: List[Path]) -> Dict[Path, str]:
    """Output name stems, unique within the run by construction (ignoring case, for case-insensitive disks).

    The file stem; where inputs share it, the extension is added if theirs differ, then as many parent
    folder names as tell them apart (``a/s/x.png``, ``b/s/x.png`` -> ``a_s_x``, ``b_s_x``); a counter
    settles anything left.
    """
    stems = [f.stem.lower() for f in files]
    exts = [f.suffix.lower() for f in files]
    ext_needed = [any(t == s and e != x for t, e in zip(stems, exts)) for s, x in zip(stems, exts)]
    folders = [Path(os.path.realpath(f)).parent.parts[1:] for f in files]

    def name(i: int, depth: int) -> str:
        f = files[i]
        stem = f"{f.stem}_{exts[i].lstrip('.')}" if ext_needed[i] and depth else f.stem
        parents = folders[i][max(0, len(folders[i]) - depth + 1):] if depth > 1 else ()
        return "_".join([*parents, stem])

    depth = [0] * len(files)
    for _ in range(max((len(p) for p in folders), default=0) + 2):
        groups: Dict[str, set] = {}
        names = [name(i, d).lower() for i, d in enumerate(depth)]
        for i, n in enumerate(names):  # names that a longer name can tell apart (not just by case)
            groups.setdefault(n, set()).add((folders[i], exts[i]))
        clash = [len(groups[n]) > 1 for n in names]
        if not any(clash):
            break
        depth = [d + 1 if c else d for d, c in zip(depth, clash)]
    out: Dict[Path, str] = {}
    taken = set()
    for i, f in enumerate(files):
        base = stem = name(i, depth[i])
        k = 1
        while stem.lower() in taken:
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem.lower())
        out[f] = stem
    return out


def _check_out_dir(out: Path) -> Optional[str]:
    """None when ``out`` is (or can be created as) a writable folder, else the reason."""
    import tempfile

    if out.exists() and not out.is_dir():
        return f"--out {out} is an existing file, not a folder: choose a folder for the outputs"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".grainseg_write_test"):
            pass
    except OSError as err:
        return f"cannot write to output folder {out}: {err.strerror or err}"
    return None


def _device(name: str) -> str:
    from grainseg.devices import resolve_device

    return resolve_device(name, "--device")


def _image_progress(files: List[Path], quiet: bool, tqdm):
    """The images to loop over: a tqdm bar on a terminal, else one ``image i/n`` line on stderr each."""
    if quiet:
        return files
    if sys.stderr.isatty():
        return tqdm(files, desc="images", unit="image")

    def lines():
        for i, path in enumerate(files, 1):
            print(f"{PROG}: image {i}/{len(files)}: {path}", file=sys.stderr, flush=True)
            yield path

    return lines()


def _g_text(g: dict, kind: str) -> str:
    """"G planimetric 4.13 (95 %: 3.85-4.41)": G and, when the model records its error, the 95 % interval
    that holds it as well as the sampling spread."""
    val = g.get(f"G_{kind}")
    if val is None:
        return f"G {kind} n/a"
    lo, hi = g.get(f"G_{kind}_ci95_with_model_error") or (None, None)
    band = "" if lo is None or hi is None else f" (95 %: {lo:.2f}-{hi:.2f})"
    return f"G {kind} {val:.2f}{band}"


def _tile_progress(quiet: bool, every: int = TILE_LINE_EVERY):
    """predict_proba's ``progress``: a tqdm bar on a terminal, else a line on stderr every ``every`` tiles."""
    if quiet:
        return False
    if sys.stderr.isatty():
        return True
    printed = [0]

    def report(done: int) -> None:
        if done // every > printed[0]:
            printed[0] = done // every
            print(f"{PROG}: {done} tiles done", file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    """Run ``grainseg predict``; returns the exit code (0 ok, 1 some image failed, 2 usage error)."""
    if args.units == "um" and args.scale is None:
        _error("--units um needs --scale UM_PER_PX (micrometres per pixel); sizes stay in pixels without it")
        return 2
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        _error(f"--scale must be a positive, finite number of micrometres per pixel, got {args.scale}")
        return 2
    try:
        _device(args.device)
    except ValueError as err:
        _error(str(err))
        return 2
    if not 0 <= args.overlap < 1 or args.batch_size < 1:
        _error("--overlap must be in [0, 1) and --batch-size >= 1")
        return 2
    try:
        grain_kw = instance_kwargs(args)
        rescale = rescale_value(args)
    except ValueError as err:
        _error(str(err))
        return 2
    scale = args.scale if args.units != "px" else None
    paths = list(args.paths) + ([str(EXAMPLE_IMAGE)] if args.example else [])
    if not paths:
        _error("no input: give image files or folders, or --example for the bundled sample micrograph")
        return 2
    out = Path(args.out)
    files, failures, notes = collect_inputs(paths, args.recursive, out)
    for line in failures:
        _error(line)
    for line in notes:
        print(f"{PROG}: note: {line}", file=sys.stderr)
    if not files:
        return 1
    with removed_if_left_empty(out):  # nothing was written: leave no empty folder behind
        problem = _check_out_dir(out)
        if problem:
            _error(problem)
            return 1
        return _predict_files(args, files, len(failures), out, scale, grain_kw, rescale)


def _predict_files(args: argparse.Namespace, files: List[Path], failed: int, out: Path, scale: Optional[float],
                   grain_kw: dict, rescale) -> int:
    """Load the model, then predict and save each file; returns the exit code."""
    try:
        device = _device(args.device)
        from grainseg.inference.predict import load_model

        model, info = load_model(args.model, device=device)
    except Exception as err:  # missing weights, bad id, bad device: one line
        _error(f"cannot load model {'(embedded default)' if args.model is None else repr(args.model)}: {err}")
        return 1

    from tqdm.auto import tqdm

    from grainseg.grains.report import GrainReport
    from grainseg.inference.predict import analyze

    stems = _stems(files)
    inputs = {os.path.normcase(os.path.realpath(f)) for f in files}
    bar = _image_progress(files, args.quiet, tqdm)
    for path in bar:
        stem = stems[path]
        try:
            report_paths = GrainReport.output_paths(out, stem)
            clobbered = [str(p) for p in report_paths.values() if os.path.normcase(os.path.realpath(p)) in inputs]
            if clobbered:  # not even with --overwrite: an input of this run is the user's, not an output
                raise FileExistsError(f"an output would replace {clobbered[0]}, an input image of this run; "
                                      "choose another --out")
            existing = [str(p) for p in report_paths.values() if p.exists()]
            if existing and not args.overwrite:
                raise FileExistsError(f"outputs exist ({existing[0]}{' ...' if len(existing) > 1 else ''}); "
                                      "pass --overwrite to replace them")
            report = analyze(path, model, scale, device=device, overlap=args.overlap, batch_size=args.batch_size,
                             amp=False if args.no_amp else None, progress=_tile_progress(args.quiet),
                             model_info=info, tta=args.tta, rescale=rescale, **grain_kw)
            report.save(out, stem, overwrite=args.overwrite)
            s = report.summary
            g = s["astm_e112"]
            gtxt = ("G not computed with --units px" if args.units == "px" and args.scale is not None
                    else "G needs --scale") if scale is None else ", ".join(_g_text(g, k) for k in ("planimetric", "intercept"))
            factor = (report.model.get("rescale") or {}).get("factor", 1.0)
            rtxt = "" if factor == 1.0 else f" (fed at x{factor:.2f} to match the training grain size)"
            print(f"{path}: {s['grain_count']} grains, {gtxt}{rtxt} -> {out / stem}_*")
            for line in report.warnings:
                print(f"{PROG}: warning: {path}: {line}", file=sys.stderr)
        except Exception as err:
            failed += 1
            _error(f"{path}: {err}")
    return 1 if failed else 0
