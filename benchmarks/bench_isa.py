"""The CPU kernel variants side by side: fused ``ss2d_scan`` forward and forward+backward at one stage
shape, every variant this CPU runs (``grainseg.ops.cpu_capabilities()``), timed in turns in one process.

Usage: ``taskset -c 0 python benchmarks/bench_isa.py [--batch 1] [--stage 192x64] [--n 16] [--threads 1]
[--reps 10] [--out FILE]``.  Prints a markdown table and writes JSON (machine info included) to
benchmarks/results/scan_cpu_isa.json.  A ``GRAINSEG_MARCH`` build has one variant (``native``): run the
script against it (PYTHONPATH) to compare it with the dispatch build.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scan  # noqa: E402

import grainseg.ops as ops  # noqa: E402
from grainseg.ops import ss2d_scan  # noqa: E402


def fused_on(variant: str):
    C = ops.extension()

    def run(u, delta, A, B, C_, D, bias):
        C.set_cpu_capability(variant)
        return ss2d_scan(u, delta, A, B, C_, D, bias, delta_softplus=True)

    return run


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--stage", type=bench_scan._parse_stage, default=(192, 64), help="CHANNELSxSIDE")
    p.add_argument("--n", type=int, default=bench_scan.D_STATE)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", type=Path, default=bench_scan.RESULTS / "scan_cpu_isa.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    assert ops.backend("cpu") == "cpu", "grainseg._C is not built"
    variants = ops.cpu_capabilities()
    before = ops.cpu_capability()
    (c, side), b = args.stage, args.batch
    inputs = bench_scan.make_inputs(b, c, side, args.n, "cpu")
    try:
        times = bench_scan.bench({v: fused_on(v) for v in variants}, inputs, args.reps, args.warmup, "cpu")
    finally:
        ops.extension().set_cpu_capability(before)
    result = {"machine": bench_scan.machine_info("cpu"), "compiled": list(ops.extension().compiled_cpu_capabilities()),
              "shape": {"batch": b, "channels": c, "side": side, "n": args.n}, "reps": args.reps,
              "threads": args.threads, "times": times}
    print(f"fused ss2d_scan, batch {b}, c {c}, {side}x{side}, n {args.n}, fp32, {args.threads} thread(s), "
          f"min of {args.reps} runs, variants timed in turns; {result['machine']['cpu_model']}")
    print("| variant | forward | forward+backward |\n|---|---|---|")
    for v in variants:
        t = times[v]
        print(f"| {v} | {t['fwd_s'] * 1e3:.1f} ms | {t['fwd_bwd_s'] * 1e3:.1f} ms |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
