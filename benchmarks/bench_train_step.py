"""Training-step time of a VM-UNet model with our fused SS2D scan and with mamba-ssm's.

Scans (``--scans``): ``fused`` (:func:`grainseg.ops.ss2d_scan`, what the models use), ``materialised``
(VM-UNet's own path: torch cross-scan, our 1-D :func:`grainseg.ops.selective_scan`, cross-merge) and
``mamba`` (the same path with mamba-ssm's ``selective_scan_fn``; CUDA only, when mamba-ssm is installed),
swapped in for ``grainseg.layers.ss2d.ss2d_scan``.  Each scan gets its own model built from
the same seed (same weights), Adam (lr 1e-4) and BCE-with-logits on one fixed random batch; one step is
zero_grad, forward (under float16 autocast with ``--amp fp16``, as the trainer does on CUDA), loss,
backward, optimizer step (through a GradScaler, as the trainer does).  The scans' steps are timed in
turns (``bench_scan.time_interleaved``: CUDA events on a GPU), min and median of ``--steps`` after
``--warmup``.  Before any step, the models' eval-mode logits on the batch are compared (the two scans must compute
the same function); after the timing one more step per scan gives its peak CUDA memory.

    python benchmarks/bench_train_step.py --device cuda --batches 1,8 --amp off,fp16 --scans fused,mamba \\
        --out train_step.json
"""
from __future__ import annotations

import argparse
import json
import sys
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


def measure(model_name: str, size: int, batch: int, amp: str, fns: Dict[str, Callable], steps: int, warmup: int,
            device: str) -> List[Dict[str, object]]:
    """One row per scan at this batch and amp setting."""
    g = torch.Generator().manual_seed(1)
    models, opts, scalers = {}, {}, {}
    for name in fns:
        torch.manual_seed(0)
        models[name] = grainseg.create_model(model_name).to(device).train()
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=1e-4)
        scalers[name] = torch.amp.GradScaler(device, enabled=amp == "fp16")
    in_chans = next(iter(models.values())).in_chans
    x = torch.rand(batch, in_chans, size, size, generator=g).to(device)
    y = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float().to(device)
    autocast = dict(device_type=device, dtype=torch.float16, enabled=amp == "fp16")
    original = ss2d_layer.ss2d_scan

    def logits_of(name):  # in eval mode: drop-path and dropout draw differently in every model
        ss2d_layer.ss2d_scan = fns[name]
        try:
            with torch.no_grad(), torch.autocast(**autocast):
                return models[name].eval()(x).float()
        finally:
            ss2d_layer.ss2d_scan = original
            models[name].train()

    def step(name):
        def run():
            ss2d_layer.ss2d_scan = fns[name]
            try:
                opts[name].zero_grad(set_to_none=True)
                with torch.autocast(**autocast):
                    logits = models[name](x)
                loss = F.binary_cross_entropy_with_logits(logits.float(), y)
                scalers[name].scale(loss).backward()
                scalers[name].step(opts[name])
                scalers[name].update()
            finally:
                ss2d_layer.ss2d_scan = original
        return run

    first = {name: logits_of(name) for name in fns}
    base = first.get("fused", next(iter(first.values())))
    timed = time_interleaved({name: step(name) for name in fns}, steps, warmup, device)
    rows = []
    for name in fns:
        peak = None
        if device == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats()
            step(name)()
            _sync(device)
            peak = torch.cuda.max_memory_allocated() / 2**20
        t_min, t_med = timed[name]
        rows.append({
            "model": model_name, "size": size, "batch": batch, "amp": amp, "scan": name,
            "step_s": t_min, "step_median_s": t_med, "images_per_s": batch / t_med,
            "peak_cuda_memory_MiB": peak,
            "initial_loss": float(F.binary_cross_entropy_with_logits(first[name], y)),
            "logits_max_abs_diff_vs_fused": float((first[name] - base).abs().max()),
        })
    del models, opts, scalers
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--model", default="vmunet_aspp")
    p.add_argument("--size", type=int, default=256, help="input side (default 256, the paper's)")
    p.add_argument("--batches", type=lambda s: _parse_list(s, int), default=[1, 8])
    p.add_argument("--amp", type=_parse_list, default=["off"], help="comma-separated: off (fp32), fp16 (autocast)")
    p.add_argument("--scans", type=_parse_list, default=list(SCANS), help=f"comma-separated, of {', '.join(SCANS)}")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, required=True, help="JSON output (rewritten after every setting)")
    args = p.parse_args(argv)
    bad = [s for s in args.scans if s not in SCANS] + [a for a in args.amp if a not in ("off", "fp16")]
    if bad:
        p.error(f"unknown scan or amp setting: {', '.join(bad)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)
    fns, notes = scan_functions(args.scans, args.device)
    result = {"machine": machine_info(args.device), "partial": True,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "statistic": "min (also step_median_s) of the timed steps, scans timed in turns",
              "skipped": {k: v for k, v in notes.items() if k != "mamba_ssm"}, "mamba_ssm": notes.get("mamba_ssm"),
              "rows": [], "materialised_over_fused_step": [], "mamba_over_fused_step": []}
    for amp in args.amp:
        for batch in args.batches:
            rows = measure(args.model, args.size, batch, amp, fns, args.steps, args.warmup, args.device)
            result["rows"] += rows
            by = {r["scan"]: r for r in rows}
            for other in ("materialised", "mamba"):
                if "fused" in by and other in by:
                    result[f"{other}_over_fused_step"].append(
                        {"batch": batch, "amp": amp, "ratio": by[other]["step_s"] / by["fused"]["step_s"]})
            for r in rows:
                mem = "" if r["peak_cuda_memory_MiB"] is None else f", peak {r['peak_cuda_memory_MiB']:.0f} MiB"
                print(f"{args.model} {args.size}x{args.size} batch {batch} amp {amp} {r['scan']:6s}: "
                      f"step {r['step_s'] * 1e3:.1f} ms (median {r['step_median_s'] * 1e3:.1f}), "
                      f"{r['images_per_s']:.1f} img/s{mem}, logits vs fused {r['logits_max_abs_diff_vs_fused']:.2e}",
                      flush=True)
            write_json(args.out, result)
    result["partial"] = False
    write_json(args.out, result)
    print(f"wrote {args.out}" + (f" (skipped: {json.dumps(result['skipped'])})" if result["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
