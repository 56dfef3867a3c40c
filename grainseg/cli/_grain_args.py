"""Options shared by the commands that predict: grain instances and magnification rescaling
(``predict``, ``validate``) and test-time augmentation (``predict``, ``validate``, ``evaluate``)."""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

from grainseg.grains.instances import DEFAULT_INSTANCE_PARAMS, GRAIN_METHODS, check_instance_params
from grainseg.grains.intercepts import DEFAULT_DIRECT_LINK, check_direct_link

__all__ = ["add_instance_args", "instance_kwargs", "add_tta_arg", "add_rescale_arg", "rescale_value",
           "subset_of_split"]


def add_instance_args(p: argparse.ArgumentParser) -> None:
    """Add --method, --threshold, --core, --sigma, --min-core-frac, --min-grain-area, --watershed, --direct-link."""
    d = DEFAULT_INSTANCE_PARAMS
    g = p.add_argument_group("grain instances (see docs/analysis.md)")
    g.add_argument("--method", choices=GRAIN_METHODS, default=d["method"],
                   help="watershed: flood the boundary probability from high-probability cores (closes gaps; "
                        "default); threshold: connected components of probability > --threshold")
    g.add_argument("--threshold", type=float, default=d["threshold"], help="probability threshold for grain interior")
    g.add_argument("--core", type=float, default=d["core"], help="watershed: probability of a grain core (marker)")
    g.add_argument("--sigma", type=float, default=d["sigma"], help="watershed: Gaussian smoothing of the probability, px")
    g.add_argument("--min-core-frac", type=float, default=d["min_core_frac"],
                   help="watershed: drop cores smaller than this fraction of the median core area")
    g.add_argument("--min-grain-area", type=int, default=d["min_grain_area"], metavar="PX",
                   help="merge (watershed) or drop (threshold) grains smaller than this")
    g.add_argument("--watershed", action="store_true",
                   help="threshold method only: split merged interiors by a distance-transform watershed")
    g.add_argument("--direct-link", type=float, default=DEFAULT_DIRECT_LINK, metavar="P",
                   help="direct E112 count: also cross the regions of probability < P that touch the predicted "
                        "boundary (faint boundary continuations); P = --threshold counts the mask alone "
                        f"(default: {DEFAULT_DIRECT_LINK})")


_INSTANCE_PARAMS = ("method", "threshold", "core", "sigma", "min_core_frac", "min_grain_area", "watershed")


def instance_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """Keyword arguments of GrainReport.from_probability; ValueError naming a bad option."""
    check_instance_params(args.method, args.threshold, args.core, args.sigma, args.min_core_frac, args.min_grain_area,
                          args.watershed, names={k: "--" + k.replace("_", "-") for k in _INSTANCE_PARAMS})
    check_direct_link(args.direct_link, args.threshold, name="--direct-link", threshold_name="--threshold")
    return {"method": args.method, "threshold": args.threshold, "core": args.core, "sigma": args.sigma,
            "min_core_frac": args.min_core_frac, "min_grain_area": args.min_grain_area, "watershed": args.watershed,
            "direct_link": args.direct_link}


def subset_of_split(subset: Optional[str], split: Optional[str], verb: str) -> str:
    """--subset as used (default "test"); ValueError when it is given without a --split, which would drop it."""
    if subset is not None and split is None:
        raise ValueError(f"--subset {subset} needs --split (a split of DATA/splits.json); without one every image "
                         f"is {verb}")
    return subset or "test"


def add_tta_arg(p: argparse.ArgumentParser) -> None:
    """Add --tta (test-time augmentation; off by default)."""
    from grainseg.inference.tta import TRANSFORMS

    p.add_argument("--tta", choices=sorted(TRANSFORMS), default="none",
                   help="test-time augmentation: average the probabilities over 2 (hflip), 4 (flips) or 8 (d4: "
                        "flips and 90-degree rotations) views, at that many times the time (default: none)")


def add_rescale_arg(p: argparse.ArgumentParser) -> None:
    """Add --rescale (auto by default: grains fed at the size the model was trained on)."""
    from grainseg.inference.rescale import DEFAULT_RESCALE

    p.add_argument("--rescale", default=DEFAULT_RESCALE, metavar="auto|none|FACTOR",
                   help="feed the image with its grains at the size of the training grains (auto: search for the "
                        "factor, one extra prediction or a few when the magnification differs from the training "
                        "set's; none: as the model's preprocessing scales it; or a factor, > 1 enlarges) "
                        f"(default: {DEFAULT_RESCALE})")


def rescale_value(args: argparse.Namespace) -> Any:
    """The --rescale value for the Python API: None, "auto" or a float; ValueError naming the option."""
    from grainseg.inference.rescale import RESCALE_RANGE

    v = str(args.rescale).strip().lower()
    if v in ("auto", "none"):
        return None if v == "none" else "auto"
    try:
        f = float(v)
    except ValueError:
        f = float("nan")
    if not RESCALE_RANGE[0] <= f <= RESCALE_RANGE[1]:
        raise ValueError(f"--rescale must be auto, none or a factor in [{RESCALE_RANGE[0]:g}, {RESCALE_RANGE[1]:g}], "
                         f"got {args.rescale!r}")
    return f
