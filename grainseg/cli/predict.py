"""``grainseg predict PATH... [--model NAME|HUB_ID|DIR] [--scale UM_PER_PX] [--out DIR]``.

Segments micrographs (files or folders of PNG / JPEG / TIFF / BMP), measures their grains and writes,
per image, ``<stem>_prob.png`` (16-bit probability), ``_mask.png`` (white = grain interior),
``_overlay.png``, ``_labels.tif`` (grain-interior instance labels), ``_grains.csv`` and
``_summary.json`` (counts, sizes, ASTM E112 G by both methods with 95 % CIs, model id and revision).
Existing files are never replaced without ``--overwrite``.  A bad image prints one ``error:`` line and
the batch goes on; the exit code is 1 when any image failed, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = ["add_parser", "run", "EXAMPLE_IMAGE", "collect_inputs"]

#: The bundled sample micrograph (our own synthetic one), used by ``--example``.
EXAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "assets" / "sample_micrograph.png"

PROG = "grainseg predict"


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
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for grain interior")
    p.add_argument("--watershed", action="store_true", help="split merged grains by a distance watershed")
    p.add_argument("--min-grain-area", type=int, default=10, metavar="PX", help="drop interiors smaller than this")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--recursive", action="store_true", help="search folders recursively")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _error(message: str) -> None:
    """One clear line on stderr."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def collect_inputs(paths: List[str], recursive: bool = False) -> Tuple[List[Path], List[str]]:
    """(image files, error lines): folders expand to their image files; other paths are kept as given.

    A named file with another extension is kept, so reading it reports the unsupported format.
    """
    from grainseg.data.io import IMAGE_EXTENSIONS

    files: List[Path] = []
    errors: List[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(f for f in (path.rglob("*") if recursive else path.iterdir())
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                errors.append(f"{path}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


def _stems(files: List[Path]) -> Dict[Path, str]:
    """Output name stems: the file stem, with the extension added where two inputs share a stem."""
    seen: Dict[str, int] = {}
    for f in files:
        seen[f.stem] = seen.get(f.stem, 0) + 1
    out: Dict[Path, str] = {}
    for f in files:
        stem = f.stem if seen[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        if stem in out.values():  # same name in two folders
            stem = f"{f.parent.name}_{stem}"
        out[f] = stem
    return out


def _check_out_dir(out: Path) -> Optional[str]:
    """None when ``out`` can be created and written, else the reason."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".grainseg_write_test"
        with open(probe, "xb"):
            pass
        probe.unlink()
    except FileExistsError:
        return None
    except OSError as err:
        return f"cannot write to output folder {out}: {err.strerror or err}"
    return None


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def run(args: argparse.Namespace) -> int:
    """Run ``grainseg predict``; returns the exit code (0 ok, 1 some image failed, 2 usage error)."""
    if args.units == "um" and args.scale is None:
        _error("--units um needs --scale UM_PER_PX (micrometres per pixel); sizes stay in pixels without it")
        return 2
    if args.scale is not None and not args.scale > 0:
        _error(f"--scale must be a positive number of micrometres per pixel, got {args.scale}")
        return 2
    if not 0 < args.threshold < 1 or not 0 <= args.overlap < 1 or args.batch_size < 1 or args.min_grain_area < 0:
        _error("--threshold must be in (0, 1), --overlap in [0, 1), --batch-size >= 1, --min-grain-area >= 0")
        return 2
    scale = args.scale if args.units != "px" else None
    paths = list(args.paths) + ([str(EXAMPLE_IMAGE)] if args.example else [])
    if not paths:
        _error("no input: give image files or folders, or --example for the bundled sample micrograph")
        return 2
    files, failures = collect_inputs(paths, args.recursive)
    for line in failures:
        _error(line)
    out = Path(args.out)
    problem = _check_out_dir(out)
    if problem:
        _error(problem)
        return 1
    if not files:
        return 1
    try:
        device = _device(args.device)
        from grainseg.inference.predict import load_model

        model, info = load_model(args.model, device=device)
    except Exception as err:  # missing weights, bad id, bad device: one line
        _error(f"cannot load model {args.model or '(embedded default)'}: {err}")
        return 1

    from tqdm.auto import tqdm

    from grainseg.grains.report import GrainReport
    from grainseg.inference.predict import predict_proba

    failed = len(failures)
    stems = _stems(files)
    bar = tqdm(files, desc="images", unit="image", disable=True if args.quiet else None)
    for path in bar:
        stem = stems[path]
        try:
            report_paths = GrainReport.output_paths(out, stem)
            existing = [str(p) for p in report_paths.values() if p.exists()]
            if existing and not args.overwrite:
                raise FileExistsError(f"outputs exist ({existing[0]}{' ...' if len(existing) > 1 else ''}); "
                                      "pass --overwrite to replace them")
            from grainseg.data.io import read_image

            image = read_image(path)
            prob = predict_proba(model, image, overlap=args.overlap, batch_size=args.batch_size, device=device,
                                 amp=False if args.no_amp else None, progress=not args.quiet and sys.stderr.isatty())
            report = GrainReport.from_probability(image, prob, scale=scale, threshold=args.threshold,
                                                  min_grain_area=args.min_grain_area, watershed=args.watershed,
                                                  model=info, source=str(path))
            report.save(out, stem, overwrite=args.overwrite)
            s = report.summary
            g = s["astm_e112"]
            gtxt = "G needs --scale" if scale is None else ", ".join(
                f"G {k} {'n/a' if g['G_' + k] is None else format(g['G_' + k], '.2f')}" for k in ("planimetric", "intercept"))
            print(f"{path}: {s['grain_count']} grains, {gtxt} -> {out / stem}_*")
        except Exception as err:
            failed += 1
            _error(f"{path}: {err}")
    return 1 if failed else 0
