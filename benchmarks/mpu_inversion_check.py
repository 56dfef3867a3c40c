"""Does inverting a bright-boundary micrograph let the dark-boundary default model read it?

Runs a model (default: the embedded default) on every MPU-Net image (``../shared/data/mpu_net``: OM and
FESEM, boundary labels white) as it is and intensity-inverted (255 - value, written to a temporary
folder), through ``grainseg.inference.validate``, and writes per image Dice, boundary F1 (2 px), true and
predicted grain counts and dG (planimetric, intercept) to a JSON.  Four images: a check, not a benchmark.

    python benchmarks/mpu_inversion_check.py --out benchmarks/results/mpu_inversion_check.json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scan import machine_info, write_json  # noqa: E402

SHARED = Path(os.environ.get("GRAINSEG_SHARED", HERE.parent.parent / "shared"))
KEYS = ("dice", "boundary_f1", "grains_true", "grains_pred", "dG_planimetric", "dG_intercept")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mpu", type=Path, default=SHARED / "data" / "mpu_net", help="MPU-Net folder (OM/, FESEM/)")
    p.add_argument("--model", default=None, help="model id or folder (default: the embedded default)")
    p.add_argument("--out", type=Path, required=True, help="JSON output")
    args = p.parse_args(argv)
    from PIL import Image

    from grainseg.inference.predict import load_model
    from grainseg.inference.validate import LabelledImage, validate

    if not (args.mpu / "OM" / "test_img").is_dir():
        raise SystemExit(f"--mpu: {args.mpu} has no OM/test_img folder (the MPU-Net layout)")
    model, info = load_model(args.model)
    rows: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for modality in ("FESEM", "OM"):
            folder = args.mpu / modality
            for name in sorted(q.name for q in (folder / "test_img").iterdir()):
                src, label = folder / "test_img" / name, folder / "test_boundary_label" / name
                inverted = Path(tmp) / f"{modality}_{name}"
                Image.fromarray((255 - np.asarray(Image.open(src))).astype(np.uint8)).save(inverted)
                for tag, image in (("as is", src), ("inverted", inverted)):
                    res = validate(model, [LabelledImage(Path(name).stem, [[(image, label)]])], polarity="boundary")
                    row = {k: res["rows"][0].get(k) for k in KEYS}
                    rows[f"{modality}/{name}/{tag}"] = row
                    print(modality, name, f"{tag:8s}", ", ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    write_json(args.out, {"machine": machine_info("cpu"), "model": info.get("id") or args.model,
                          "model_sha256": info.get("sha256"), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
