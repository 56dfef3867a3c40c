"""EnhancedASPP's dilated convolutions: torch's weight gradient against the per-tap one, side by side.

``grainseg.layers.dilated_conv`` computes a dilated convolution's weight gradient as one batched matrix
product per kernel tap, from 16 channels on.  This script times, in one process and in turns:

* per convolution (256 x 256, 3 x 3): torch's weight gradient (``aten::convolution_backward``, weight
  only) and the per-tap one, with each one's largest error against a float64 reference;
* the whole head (``EnhancedASPP`` forward + backward on the channels-last map VM-UNet hands it), as
  in ``vmunet_aspp`` (24 channels) and ``vmunet_aspp_small`` (8), with the per-tap gradient and without
  it (``_MIN_CHANNELS`` raised past the channel count, i.e. torch's convolution throughout);
* a whole ``vmunet_aspp`` training step (batch 1 and 4, fused Adam), with and without it.

Usage: ``OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_aspp_head.py [--reps 5] [--step-reps 10]
[--out FILE]`` (about 6 minutes on one thread).
Prints markdown tables; writes JSON with the machine to benchmarks/results/aspp_head_cpu.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import RESULTS, machine_info, write_json  # noqa: E402

import grainseg.layers.dilated_conv as dilated_conv  # noqa: E402
from grainseg._allocator import keep_freed_memory  # noqa: E402
from grainseg.layers import EnhancedASPP  # noqa: E402

SIDE = 256


def _timed_ms(fns: Dict[str, Callable[[], object]], reps: int) -> Dict[str, Dict[str, float]]:
    """Minimum and median time of each function over `reps` rounds, run in turns (the order alternating
    every round, one warm-up each)."""
    for f in fns.values():
        f()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for r in range(reps):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return {k: {"min": min(v) * 1e3, "median": statistics.median(v) * 1e3} for k, v in times.items()}


# _MIN_CHANNELS that no layer reaches: torch's weight gradient throughout.
TORCH_ONLY = 1 << 30


def _with_min_channels(min_channels: int, fn: Callable[[], object]) -> Callable[[], None]:
    """fn, run with ``dilated_conv._MIN_CHANNELS`` set to min_channels (restored afterwards)."""
    def run():
        default = dilated_conv._MIN_CHANNELS
        dilated_conv._MIN_CHANNELS = min_channels
        try:
            fn()
        finally:
            dilated_conv._MIN_CHANNELS = default
    return run


def _min_ms(fns: Dict[str, Callable[[], object]], reps: int) -> Dict[str, float]:
    return {k: v["min"] for k, v in _timed_ms(fns, reps).items()}


def conv_case(batch: int, channels: int, rate: int, reps: int) -> Dict[str, object]:
    torch.manual_seed(0)
    x = torch.randn(batch, SIDE, SIDE, channels).permute(0, 3, 1, 2)  # channels-last, as in the head
    g = torch.randn(batch, SIDE, SIDE, channels).permute(0, 3, 1, 2)
    w = torch.randn(channels, channels, 3, 3) * 0.1
    pad = dil = [rate, rate]

    def torch_wgrad(x=x, g=g, w=w):
        return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], pad, dil, False, [0, 0], 1,
                                                   [False, True, False])[1]

    def taps_wgrad():
        return dilated_conv._weight_grad(g, x, w.shape, (rate, rate), (rate, rate))

    ms = _min_ms({"torch": torch_wgrad, "per_tap": taps_wgrad}, reps)
    ref = torch_wgrad(x.double(), g.double(), w.double())
    err = {k: float((f().double() - ref).abs().max()) for k, f in (("torch", torch_wgrad), ("per_tap", taps_wgrad))}
    return {"batch": batch, "channels": channels, "rate": rate, "ms": ms, "max_abs_err_vs_fp64": err,
            "max_abs_fp64": float(ref.abs().max())}


def head_case(batch: int, channels: int, reps: int) -> Dict[str, object]:
    torch.manual_seed(0)
    head = EnhancedASPP(channels, channels)
    x = torch.randn(batch, SIDE, SIDE, channels, requires_grad=True)
    g = torch.randn(batch, channels, SIDE, SIDE)
    default = dilated_conv._MIN_CHANNELS

    def step():
        head(x.permute(0, 3, 1, 2)).backward(g)

    ms = _min_ms({"per_tap": _with_min_channels(default, step), "torch": _with_min_channels(TORCH_ONLY, step)}, reps)
    return {"batch": batch, "channels": channels, "ms": ms, "per_tap_used": channels >= default}


def step_case(model_name: str, batch: int, reps: int) -> Dict[str, object]:
    """A whole training step (zero_grad, forward, BCE, backward, fused Adam) with and without it."""
    import grainseg

    torch.manual_seed(0)
    model = grainseg.create_model(model_name)
    opt = torch.optim.Adam(model.parameters(), 1e-4, fused=True)
    x = torch.randn(batch, 3, SIDE, SIDE)
    target = (torch.rand(batch, 1, SIDE, SIDE) > 0.5).float()
    default = dilated_conv._MIN_CHANNELS

    def step():
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(x), target).backward()
        opt.step()

    ms = _timed_ms({"per_tap": _with_min_channels(default, step), "torch": _with_min_channels(TORCH_ONLY, step)},
                   reps)
    return {"model": model_name, "batch": batch, "ms": ms}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--step-reps", type=int, default=10, help="training steps per variant (default 10)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "aspp_head_cpu.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the trainer does
    result = {"machine": machine_info("cpu"), "torch_threads": torch.get_num_threads(), "side": SIDE,
              "min_channels": dilated_conv._MIN_CHANNELS, "convs": [], "heads": [], "steps": []}
    print("| batch | channels | rate | torch wgrad | per-tap wgrad | speed-up | max err vs fp64: torch / per-tap |")
    print("|---|---|---|---|---|---|---|")
    for batch, channels, rate in ((1, 8, 3), (1, 16, 3), (1, 24, 3), (1, 24, 15), (4, 24, 9)):
        r = conv_case(batch, channels, rate, args.reps)
        result["convs"].append(r)
        t, e = r["ms"], r["max_abs_err_vs_fp64"]
        print(f"| {batch} | {channels} | {rate} | {t['torch']:.1f} ms | {t['per_tap']:.1f} ms | "
              f"{t['torch'] / t['per_tap']:.2f}x | {e['torch']:.1e} / {e['per_tap']:.1e} |", flush=True)
        write_json(args.out, result)
    print("\n| batch | channels | head fwd+bwd, torch's wgrad | with the per-tap wgrad (default) | speed-up |")
    print("|---|---|---|---|---|")
    for batch, channels in ((1, 24), (4, 24), (1, 8), (4, 8)):
        r = head_case(batch, channels, args.reps)
        result["heads"].append(r)
        t = r["ms"]
        note = "" if r["per_tap_used"] else " (not used below 16 channels)"
        print(f"| {batch} | {channels} | {t['torch']:.1f} ms | {t['per_tap']:.1f} ms{note} | "
              f"{t['torch'] / t['per_tap']:.2f}x |", flush=True)
        write_json(args.out, result)
    print(f"\n| model | batch | training step, torch's wgrad | with the per-tap wgrad (default) | speed-up |"
          f" (min / median of {args.step_reps})")
    print("|---|---|---|---|---|")
    for model_name, batch in (("vmunet_aspp", 1), ("vmunet_aspp", 4)):
        r = step_case(model_name, batch, args.step_reps)
        result["steps"].append(r)
        t, n = r["ms"]["torch"], r["ms"]["per_tap"]
        print(f"| `{model_name}` | {batch} | {t['min'] / 1e3:.3f} / {t['median'] / 1e3:.3f} s | "
              f"{n['min'] / 1e3:.3f} / {n['median'] / 1e3:.3f} s | {t['min'] / n['min']:.2f}x / "
              f"{t['median'] / n['median']:.2f}x |", flush=True)
        write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
