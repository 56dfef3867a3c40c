"""Training-step time of VM-UNet models: our fused SS2D scan against the alternatives, fp32 against mixed
precision, the fused Adam against torch's per-parameter loop.

A *variant* is one (scan, amp, adam) setting, each with its own model built from the same seed (same
weights):

- scans (``--scans``): ``fused`` (:func:`grainseg.ops.ss2d_scan`, what the models use), ``materialised``
  (VM-UNet's own path: torch cross-scan, our 1-D :func:`grainseg.ops.selective_scan`, cross-merge) and
  ``mamba`` (the same path with mamba-ssm's ``selective_scan_fn``; CUDA only, when mamba-ssm is installed),
  swapped in for ``grainseg.layers.ss2d.ss2d_scan``;
- amp (``--amp``): ``off`` (fp32), ``fp16`` (float16 autocast with a GradScaler, as the trainer on CUDA),
  ``bf16`` (bfloat16 autocast, the trainer's ``--amp on`` on the CPU);
- adam (``--adam``): ``loop`` (``torch.optim.Adam()``, the trainer before fused Adam) or ``fused``
  (``fused=True``, the trainer's default now).

One step is zero_grad, forward, BCE-with-logits on one fixed random batch, backward, Adam step (lr 1e-4).
All variants of a model and batch are timed in turns (``bench_scan.time_interleaved``: CUDA events on a
GPU), min and median of ``--steps`` after ``--warmup``; ``speedup_vs_baseline`` divides the baseline
variant's time (the first of ``--scans`` / ``--amp`` / ``--adam``) by each variant's.  Before any step
the variants' eval-mode logits are compared (against the fused scan at the same amp, and against the
fp32 variant of the same scan).  ``--forward`` also times the eval-mode forward (no grad) of every
(scan, amp); ``--profile N`` profiles one step of every variant and keeps its N ops of most self time.
On CUDA, one more step per variant gives its peak memory.  The process keeps freed memory as the trainer
does (``grainseg._allocator.keep_freed_memory``; before 2026-12-03 it did not, so the CPU times and
profiles of earlier JSONs include glibc's page faults of every large tensor).

    python benchmarks/bench_train_step.py --device cpu --models vmunet_aspp,vmunet_aspp_small --batches 1,4 \
        --scans fused --amp off,bf16 --adam loop,fused --forward --profile 12 --out train_step_cpu.json
    python benchmarks/bench_train_step.py --device cuda --batches 1,8 --amp off,fp16 --scans fused,mamba \
        --out train_step.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import (  # noqa: E402
    _parse_list,
    cross_scan_path,
    load_mamba_scan,
    machine_info,
    time_interleaved,
    write_json,
)

import grainseg  # noqa: E402
import grainseg.layers.ss2d as ss2d_layer  # noqa: E402
from grainseg.ops import selective_scan  # noqa: E402

SCANS = ("fused", "materialised", "mamba")


def scan_functions(names: List[str], device: str) -> tuple:
    """{name: a drop-in for ``ss2d_scan``} and {name: why it is skipped}."""
    fns: Dict[str, Callable] = {}
    skipped: Dict[str, str] = {}
    for name in names:
        if name == "fused":
            fns[name] = ss2d_layer.ss2d_scan
            continue
        if name == "materialised":
            one_d = selective_scan
        else:
            one_d, how = load_mamba_scan() if device == "cuda" else (None, "mamba-ssm runs on CUDA only")
            if one_d is None:
                skipped[name] = how
                continue
            skipped["mamba_ssm"] = how  # not skipped: the record of which mamba-ssm ran
        fns[name] = _as_ss2d_scan(cross_scan_path(one_d))
    return fns, skipped


def _as_ss2d_scan(path: Callable) -> Callable:
    """``ss2d_scan``'s signature around a :func:`bench_scan.cross_scan_path`."""
    def scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
        assert delta_softplus, "SS2D always scans with softplus(delta + bias)"
        return path(u, delta, A, B, C, D, delta_bias)
    return scan


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


AMPS = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}
ADAMS = ("loop", "fused")


def _variant_name(scan: str, amp: str, adam: str) -> str:
    return f"{scan}/{amp}/{adam}"


def _op_label(key: str) -> str:
    """The profiler files a custom op's forward kernel under its autograd node's name; say what it is."""
    m = re.fullmatch(r"GeneratedBackwardFor_grainseg_(\w+)_fwd_default", key)
    return f"grainseg::{m.group(1)}_fwd (kernel)" if m else key


def _profile_step(run: Callable[[], None], top: int) -> List[Dict[str, object]]:
    """The ``top`` ops of most self CPU time in one step: name, self ms, calls, and for the ops whose
    FLOPs the profiler counts (matmuls, convolutions) the GFLOP and the GFLOP/s they ran at."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = []
    for e in events[:top]:
        row = {"op": _op_label(e.key), "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
               "calls": e.count}
        if getattr(e, "flops", 0) and e.self_cpu_time_total > 0:
            row.update(gflop=e.flops / 1e9, gflop_per_s=e.flops / (e.self_cpu_time_total / 1e6) / 1e9)
        rows.append(row)
    return rows


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """What one n x n x n fp32 matmul runs at on this CPU with the current threads: the ceiling that the
    profile's matmul GFLOP/s are to be read against."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def measure(model_name: str, size: int, batch: int, variants: List[tuple], fns: Dict[str, Callable], steps: int,
            warmup: int, device: str, forward: bool = False, profile_top: int = 0) -> List[Dict[str, object]]:
    """One row per (scan, amp, adam) variant at this model and batch."""
    g = torch.Generator().manual_seed(1)
    models, opts, scalers = {}, {}, {}
    for key in variants:
        scan, amp, adam = key
        torch.manual_seed(0)
        models[key] = grainseg.create_model(model_name).to(device).train()
        opts[key] = torch.optim.Adam(models[key].parameters(), lr=1e-4, **({"fused": True} if adam == "fused" else {}))
        scalers[key] = torch.amp.GradScaler(device, enabled=amp == "fp16")
    in_chans = next(iter(models.values())).in_chans
    x = torch.rand(batch, in_chans, size, size, generator=g).to(device)
    y = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float().to(device)
    original = ss2d_layer.ss2d_scan

    def autocast(amp):
        return torch.autocast(device_type=device, dtype=AMPS[amp] or torch.float32, enabled=AMPS[amp] is not None)

    def logits_of(key):  # in eval mode: drop-path and dropout draw differently in every model
        scan, amp, _ = key
        ss2d_layer.ss2d_scan = fns[scan]
        try:
            with torch.no_grad(), autocast(amp):
                return models[key].eval()(x).float()
        finally:
            ss2d_layer.ss2d_scan = original
            models[key].train()

    def step(key):
        scan, amp, _ = key

        def run():
            ss2d_layer.ss2d_scan = fns[scan]
            try:
                opts[key].zero_grad(set_to_none=True)
                with autocast(amp):
                    logits = models[key](x)
                loss = F.binary_cross_entropy_with_logits(logits.float(), y)
                scalers[key].scale(loss).backward()
                scalers[key].step(opts[key])
                scalers[key].update()
            finally:
                ss2d_layer.ss2d_scan = original
        return run

    def forward_pass(key):
        def run():
            logits_of(key)
        return run

    first = {key: logits_of(key) for key in variants}
    timed = time_interleaved({key: step(key) for key in variants}, steps, warmup, device)
    fwd_keys = list(dict.fromkeys((scan, amp, adam) for scan, amp, adam in variants if adam == variants[0][2]))
    fwd_timed = time_interleaved({key: forward_pass(key) for key in fwd_keys}, steps, warmup, device) if forward else {}
    base_key = variants[0]
    rows = []
    for key in variants:
        scan, amp, adam = key
        peak = None
        if device == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats()
            step(key)()
            _sync(device)
            peak = torch.cuda.max_memory_allocated() / 2**20
        t_min, t_med = timed[key]
        same_amp_fused = next((k for k in variants if k[0] == "fused" and k[1] == amp), key)
        fp32_same_scan = next((k for k in variants if k[0] == scan and k[1] == "off"), None)
        row = {
            "model": model_name, "size": size, "batch": batch, "scan": scan, "amp": amp, "adam": adam,
            "variant": _variant_name(*key),
            "step_s": t_min, "step_median_s": t_med, "images_per_s": batch / t_med,
            "speedup_vs_baseline": timed[base_key][0] / t_min, "baseline": _variant_name(*base_key),
            "peak_cuda_memory_MiB": peak,
            "initial_loss": float(F.binary_cross_entropy_with_logits(first[key], y)),
            "logits_max_abs_diff_vs_fused": float((first[key] - first[same_amp_fused]).abs().max()),
            "logits_max_abs_diff_vs_fp32": (None if fp32_same_scan is None
                                            else float((first[key] - first[fp32_same_scan]).abs().max())),
        }
        if key in fwd_timed:
            base_fwd = fwd_timed[fwd_keys[0]][0]
            row.update(forward_s=fwd_timed[key][0], forward_median_s=fwd_timed[key][1],
                       forward_speedup_vs_baseline=base_fwd / fwd_timed[key][0])
        if profile_top:
            row["profile"] = _profile_step(step(key), profile_top)
        rows.append(row)
    del models, opts, scalers
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def _print_profile(row: Dict[str, object]) -> None:
    print(f"\n{row['model']} batch {row['batch']} {row['variant']}: ops of most self time in one step")
    print("| op | self ms | share | calls | GFLOP | GFLOP/s |\n|---|---|---|---|---|---|")
    for e in row["profile"]:
        flops = f"{e['gflop']:.1f} | {e['gflop_per_s']:.0f}" if "gflop" in e else " | "
        print(f"| `{e['op']}` | {e['self_ms']:.1f} | {100 * e['share']:.1f} % | {e['calls']} | {flops} |")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--models", "--model", dest="models", type=_parse_list, default=["vmunet_aspp"],
                   help="comma-separated registered model names (default vmunet_aspp)")
    p.add_argument("--size", type=int, default=256, help="input side (default 256, the paper's)")
    p.add_argument("--batches", type=lambda s: _parse_list(s, int), default=[1, 8])
    p.add_argument("--amp", type=_parse_list, default=["off"],
                   help="comma-separated: off (fp32), fp16 (float16 autocast + GradScaler), bf16 (bfloat16 autocast)")
    p.add_argument("--adam", type=_parse_list, default=["fused"], help="comma-separated: loop, fused (Adam)")
    p.add_argument("--scans", type=_parse_list, default=list(SCANS), help=f"comma-separated, of {', '.join(SCANS)}")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--forward", action="store_true", help="also time the eval-mode forward (no grad)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile one step per variant and keep its N ops of most self CPU time")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, required=True, help="JSON output (rewritten after every setting)")
    args = p.parse_args(argv)
    bad = ([s for s in args.scans if s not in SCANS] + [a for a in args.amp if a not in AMPS]
           + [a for a in args.adam if a not in ADAMS])
    if bad:
        p.error(f"unknown scan, amp or adam setting: {', '.join(bad)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.device == "cpu" and "fp16" in args.amp:
        p.error("--amp fp16 is the CUDA setting; the CPU's mixed precision is bf16")
    if args.threads:
        torch.set_num_threads(args.threads)
    from grainseg._allocator import keep_freed_memory
    kept = keep_freed_memory()  # as the trainer does, so that the times and the profile are a training run's
    fns, notes = scan_functions(args.scans, args.device)
    variants = [(scan, amp, adam) for scan in fns for amp in args.amp for adam in args.adam]
    result = {"machine": machine_info(args.device), "partial": True,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "statistic": "min (also step_median_s) of the timed steps, variants timed in turns",
              "malloc_keeps_freed_memory": kept,
              "skipped": {k: v for k, v in notes.items() if k != "mamba_ssm"}, "mamba_ssm": notes.get("mamba_ssm"),
              "rows": [], "materialised_over_fused_step": [], "mamba_over_fused_step": []}
    if args.profile and args.device == "cpu":
        result["sgemm_2048_gflops"] = sgemm_gflops()
        print(f"fp32 sgemm 2048^3 on this CPU: {result['sgemm_2048_gflops']:.0f} GFLOP/s "
              f"({torch.get_num_threads()} threads)", flush=True)
    for model_name in args.models:
        for batch in args.batches:
            rows = measure(model_name, args.size, batch, variants, fns, args.steps, args.warmup, args.device,
                           forward=args.forward, profile_top=args.profile)
            result["rows"] += rows
            by = {(r["scan"], r["amp"], r["adam"]): r for r in rows}
            for other in ("materialised", "mamba"):
                for amp in args.amp:
                    for adam in args.adam:
                        if ("fused", amp, adam) in by and (other, amp, adam) in by:
                            result[f"{other}_over_fused_step"].append(
                                {"model": model_name, "batch": batch, "amp": amp, "adam": adam,
                                 "ratio": by[(other, amp, adam)]["step_s"] / by[("fused", amp, adam)]["step_s"]})
            for r in rows:
                mem = "" if r["peak_cuda_memory_MiB"] is None else f", peak {r['peak_cuda_memory_MiB']:.0f} MiB"
                fwd = (f"; forward {r['forward_s'] * 1e3:.1f} ms ({r['forward_speedup_vs_baseline']:.2f}x)"
                       if "forward_s" in r else "")
                print(f"{model_name} {args.size}x{args.size} batch {batch} {r['variant']:20s}: "
                      f"step {r['step_s'] * 1e3:.1f} ms (median {r['step_median_s'] * 1e3:.1f}), "
                      f"{r['speedup_vs_baseline']:.2f}x vs {r['baseline']}, {r['images_per_s']:.2f} img/s{mem}, "
                      f"logits vs fp32 {r['logits_max_abs_diff_vs_fp32'] or 0:.2e}{fwd}", flush=True)
            for r in rows:
                if "profile" in r:
                    _print_profile(r)
            write_json(args.out, result)
    result["partial"] = False
    write_json(args.out, result)
    print(f"wrote {args.out}" + (f" (skipped: {json.dumps(result['skipped'])})" if result["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
