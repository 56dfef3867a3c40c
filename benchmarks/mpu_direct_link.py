"""The direct E112 count on the 4 MPU-Net micrographs (another alloy), on the mask alone and linked at 0.7.

    python benchmarks/mpu_direct_link.py [--model M] > benchmarks/results/mpu_direct_link.log

A cross-material check of `direct_link` (chosen on ExONE val), measured as `grainseg validate` measures
(`--polarity boundary`, watershed instances, rescale auto).  Two images per modality: a check, not a
benchmark.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from grain_size_validation import _mpu_folder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model id or directory (default: the embedded one)")
    ap.add_argument("--links", default="0.5,0.7")
    args = ap.parse_args()
    from grainseg.inference import load_model
    from grainseg.inference.validate import collect_labelled, validate

    torch.set_num_threads(1)
    model = load_model(args.model)[0]
    with tempfile.TemporaryDirectory() as tmp:
        for modality in ("OM", "FESEM"):
            items = collect_labelled(_mpu_folder(modality, Path(tmp)), None, "test")
            for link in (float(v) for v in args.links.split(",")):
                s = validate(model, items, polarity="boundary",
                             grain_kw={"method": "watershed", "direct_link": link})["summary"]
                print(f"{modality} direct_link {link:g}: mean |dG| direct {s['mean_abs_dG_intercept_direct_e112']:.3f} "
                      f"(bias {s['bias_dG_intercept_direct_e112']:+.3f}), planimetric {s['mean_abs_dG_planimetric']:.3f}, "
                      f"intercept {s['mean_abs_dG_intercept']:.3f} ({s['n_images']} images)", flush=True)


if __name__ == "__main__":
    main()
