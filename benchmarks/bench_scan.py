"""Benchmark of the SS2D scan: fused kernel vs the pure-PyTorch reference vs "materialised copies + 1-D kernel".

At VM-UNet-ASPP's stage shapes for a 256x256 input (n = 16), batch 1 and 4, forward and forward+backward:

- ``fused``: :func:`grainseg.ops.ss2d_scan` on the extension (reads u/delta/B/C in place, four directions);
- ``materialised``: ``reference.ss2d_scan_ref(..., scan=grainseg.ops.selective_scan)``, VM-UNet's way:
  four reordered copies, the 1-D extension scan, cross-merge;
- ``reference``: the pure-PyTorch reference (``use_backend("reference")``), timed with few repetitions.

Also the backward's extra memory: the checkpoint tensor and kernel buffers (computed from the sizes the
kernel allocates) and the measured peak-RSS rise during backward, against storing every state.

Usage: ``python benchmarks/bench_scan.py [--quick] [--device cpu] [--threads 2] [--out FILE]``.
Writes JSON (with machine info) to benchmarks/results/ and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

import grainseg.ops as ops
from grainseg.ops import reference, selective_scan, ss2d_scan, use_backend
from grainseg.ops._scan_autograd import checkpoint_chunk

RESULTS = Path(__file__).resolve().parent / "results"
#: VM-UNet-ASPP encoder stages at a 256x256 input: (channels, side).
STAGES = [(192, 64), (384, 32), (768, 16), (1536, 8)]
D_STATE = 16
#: Backward channel blocks of the CPU kernel (csrc/cpu/scan_cpu_kernel.h: kMinBlocks, or the thread count).
CPU_MIN_BLOCKS = 8


def machine_info(device: str) -> Dict[str, object]:
    """CPU model, cores, flags of interest, torch version, date and git commit."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    info = {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "simd_flags": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"}),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "device": device,
        "backend": ops.backend(device),
        # the machine is shared: the 1-minute load average at the start says how contended the timings are
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def make_inputs(b: int, c: int, side: int, n: int, device: str, seed: int = 0):
    """fp32 SS2D arguments shaped like VM-UNet's (softplus dt around 0.01..0.1, A = -(1..n))."""
    g = torch.Generator().manual_seed(seed)
    h = w = side
    u = torch.randn(b, c, h, w, generator=g)
    delta = torch.randn(b, 4, c, h, w, generator=g) * 0.5
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(4, c, 1)
    B = torch.randn(b, 4, n, h, w, generator=g)
    C = torch.randn(b, 4, n, h, w, generator=g)
    D = torch.ones(4, c)
    bias = torch.full((4, c), -3.0)
    return [t.to(device) for t in (u, delta, A, B, C, D, bias)]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: Dict[str, Callable[[], object]], reps: int, warmup: int,
                     device: str) -> Dict[str, Tuple[float, float]]:
    """(min, median) wall time in seconds of every fn, timed in turns (a, b, a, b, ...) so that a change
    in machine load during the run hits every implementation alike and their ratios stay fair.  The table
    uses the minimum: on a shared machine it is the least disturbed by other processes; the JSON keeps both."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def implementations() -> Dict[str, Callable]:
    def fused(u, delta, A, B, C, D, bias):
        return ss2d_scan(u, delta, A, B, C, D, bias, delta_softplus=True)

    def materialised(u, delta, A, B, C, D, bias):
        return reference.ss2d_scan_ref(u, delta, A, B, C, D, bias, delta_softplus=True, scan=selective_scan)

    def ref(u, delta, A, B, C, D, bias):
        with use_backend("reference"):
            return ss2d_scan(u, delta, A, B, C, D, bias, delta_softplus=True)

    return {"fused": fused, "materialised": materialised, "reference": ref}


def bench(impls: Dict[str, Callable], inputs: List[torch.Tensor], reps: int, warmup: int, device: str,
          modes=("fwd", "fwd_bwd")) -> Dict[str, Dict[str, float]]:
    """Per implementation, ``{mode}_s`` (min) and ``{mode}_median_s`` for forward and forward+backward
    (gradients of every input), the implementations timed in turns."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    cot = torch.randn(inputs[0].shape, device=device)

    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(*leaves)
        return run

    def fwd_bwd(fn):
        def run():
            y = fn(*leaves)
            torch.autograd.grad(y, leaves, cot)
        return run

    makers = {"fwd": fwd, "fwd_bwd": fwd_bwd}
    out: Dict[str, Dict[str, float]] = {name: {} for name in impls}
    for m in modes:
        timed = time_interleaved({name: makers[m](fn) for name, fn in impls.items()}, reps, warmup, device)
        for name, (t_min, t_med) in timed.items():
            out[name][f"{m}_s"], out[name][f"{m}_median_s"] = t_min, t_med
    return out


# ---------------------------------------------------------------------------------------- memory


def _rss_kib(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def computed_memory(inputs: List[torch.Tensor], threads: int) -> Dict[str, float]:
    """Sizes the fused CPU backward allocates beyond its inputs and gradients (fp32)."""
    u = inputs[0]
    b, c, h, w = u.shape
    n, L, K, fb = D_STATE, h * w, 4, 4
    chunk = checkpoint_chunk(u.device)
    n_chunks = math.ceil(L / chunk)
    blocks = max(CPU_MIN_BLOCKS, threads)
    return {
        "ckpt_MiB": b * K * c * n_chunks * n * fb / 2**20,
        # per thread: recomputed states + decays of one chunk, 7 chunk vectors and two 16-wide row
        # buffers (ChunkBuffers), du of one channel, 4 n-vectors
        "thread_buffers_MiB": threads * (2 * chunk * n + 7 * chunk + 2 * 16 * chunk + L + 4 * n) * fb / 2**20,
        # dB / dC partials of every channel block (one batch element at a time)
        "block_partials_MiB": blocks * 2 * K * L * n * fb / 2**20,
        # B and C as step rows (the relayout every call makes; it replaces a transpose, not an extra copy)
        "step_rows_MiB": 2 * b * K * L * n * fb / 2**20,
        "all_states_MiB": b * K * c * L * n * fb / 2**20,  # what storing every state would take
        "gradients_MiB": sum(t.numel() for t in inputs) * fb / 2**20,
        "ckpt_floats_per_lane": n_chunks * n,
        "seq_len_L": L,
    }


def _child_backward_rss(b: int, c: int, side: int) -> Dict[str, float]:
    """In a fresh process (large blocks mmapped, so freed memory leaves RSS): peak-RSS rise of one
    fused backward over the RSS just before it, minus the gradients it returns."""
    inputs = make_inputs(b, c, side, D_STATE, "cpu")
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = ss2d_scan(*leaves)
    cot = torch.randn_like(y)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM)
    before = _rss_kib("VmRSS")
    grads = torch.autograd.grad(y, leaves, cot)
    peak = _rss_kib("VmHWM")
    grad_mib = sum(g.numel() * g.element_size() for g in grads) / 2**20
    return {"bwd_peak_rss_rise_MiB": (peak - before) / 1024, "bwd_rss_rise_minus_grads_MiB":
            (peak - before) / 1024 - grad_mib}


def _child_reference(b: int, c: int, side: int, mode: str) -> Dict[str, float]:
    inputs = make_inputs(b, c, side, D_STATE, "cpu")
    t = bench({"reference": implementations()["reference"]}, inputs, 1, 0, "cpu", modes=(mode,))["reference"]
    return t


def in_child(task: List[str], timeout: float, threads: int, env: Optional[Dict[str, str]] = None):
    """Runs this script's hidden --child task in a fresh process; None when it exceeds the timeout."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads), "--child", *task]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True,
                             env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ main


def _time_reference(inputs, b, c, side, args) -> Dict[str, object]:
    """The reference's times; on CPU each mode runs in a child process cut off after --ref-timeout seconds
    (its backward is quadratic in L: indexing a (…, L, n) tensor per step gives a full-size gradient)."""
    if args.device != "cpu":
        return bench({"reference": implementations()["reference"]}, inputs, 1, 0, args.device)["reference"]
    out: Dict[str, object] = {}
    for mode in ("fwd", "fwd_bwd"):
        got = in_child(["reference", str(b), str(c), str(side), mode], args.ref_timeout, args.threads)
        out[f"{mode}_s"] = None if got is None else got[f"{mode}_s"]
        if got is None:
            out[f"{mode}_timed_out_after_s"] = args.ref_timeout
    return out


def _ratio(row: Dict[str, object], name: str, mode: str) -> Tuple[float, bool]:
    """row[name][mode] / fused time, and whether it is a lower bound (the reference timed out)."""
    t = row[name].get(f"{mode}_s")
    fused = row["fused"][f"{mode}_s"]
    if t is None:
        return row[name][f"{mode}_timed_out_after_s"] / fused, True
    return t / fused, False


def _fmt_time(t: Optional[float], timeout: Optional[float] = None) -> str:
    if t is None:
        return f"> {timeout:.0f} s" if timeout else "n/a"
    return f"{t * 1e3:.1f} ms" if t < 10 else f"{t:.1f} s"


def run(args) -> Dict[str, object]:
    torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if ops.backend(device) == "reference":
        raise SystemExit(f"the extension has no {device} kernels: nothing to benchmark (build grainseg._C)")
    batches = [1] if args.quick else [1, 4]
    stages = STAGES[1:] if args.quick else STAGES
    impls = implementations()
    reps = 2 if args.quick else args.reps
    rows = []
    for b in batches:
        for c, side in stages:
            inputs = make_inputs(b, c, side, D_STATE, device)
            row: Dict[str, object] = {"batch": b, "channels": c, "height": side, "width": side, "d_state": D_STATE}
            row.update(bench({k: impls[k] for k in ("fused", "materialised")}, inputs, reps, 1, device))
            row["reference"] = _time_reference(inputs, b, c, side, args)
            for name in ("fused", "materialised", "reference"):
                t = row[name]
                print(f"  b={b} c={c} {side}x{side} {name:12s} fwd {_fmt_time(t['fwd_s'], args.ref_timeout):>10s}"
                      f"   fwd+bwd {_fmt_time(t['fwd_bwd_s'], args.ref_timeout):>10s}", flush=True)
            for mode in ("fwd", "fwd_bwd"):
                for name, key in (("reference", "ref"), ("materialised", "materialised")):
                    ratio, lower = _ratio(row, name, mode)
                    row[f"{key}_over_fused_{mode}"] = ratio
                    row[f"{key}_over_fused_{mode}_is_lower_bound"] = lower
            if device == "cpu":
                mem = computed_memory(inputs, args.threads)
                mem.update(in_child(["rss", str(b), str(c), str(side)], 600, args.threads,
                                    env={"MALLOC_MMAP_THRESHOLD_": "65536"}) or {})
                row["memory"] = mem
            rows.append(row)
    return {
        "machine": machine_info(device),
        "quick": args.quick,
        "repetitions": {"fused": reps, "materialised": reps, "reference": 1,
                        "statistic": "min (also *_median_s) after one warm-up run; fused and materialised timed in turns"},
        "reference_timeout_s": args.ref_timeout,
        "rows": rows,
        "targets": {"ref_over_fused_fwd_bwd": 25.0, "materialised_over_fused_fwd_bwd": 1.3},
    }


def table(result: Dict[str, object]) -> str:
    """Markdown tables: timings and ratios, then (CPU) the backward's memory."""
    head = ("| batch | c | h x w | fused fwd | fused f+b | mat. fwd | mat. f+b | ref fwd | ref f+b "
            "| ref/fused f+b | mat./fused f+b | ref/fused fwd | mat./fused fwd |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    timeout = result.get("reference_timeout_s")

    def ratio(r, key, mode):
        lb = r[f"{key}_over_fused_{mode}_is_lower_bound"]
        return f"{'> ' if lb else ''}{r[f'{key}_over_fused_{mode}']:.{1 if key == 'ref' else 2}f}x"

    for r in result["rows"]:
        cells = [r["batch"], r["channels"], f"{r['height']}x{r['width']}"]
        for name in ("fused", "materialised", "reference"):
            cells += [_fmt_time(r[name]["fwd_s"], timeout), _fmt_time(r[name]["fwd_bwd_s"], timeout)]
        cells += [ratio(r, "ref", "fwd_bwd"), ratio(r, "materialised", "fwd_bwd"), ratio(r, "ref", "fwd"),
                  ratio(r, "materialised", "fwd")]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    if any("memory" in r for r in result["rows"]):
        lines += ["", "| batch | c | h x w | L | ckpt | ckpt floats / lane | thread buffers | dB/dC block partials "
                  "| B/C step rows | all states (not stored) | measured bwd peak-RSS rise - gradients |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            m = r.get("memory")
            if not m:
                continue
            rss = m.get("bwd_rss_rise_minus_grads_MiB")
            lines.append(
                f"| {r['batch']} | {r['channels']} | {r['height']}x{r['width']} | {m['seq_len_L']} "
                f"| {m['ckpt_MiB']:.2f} MiB | {m['ckpt_floats_per_lane']} | {m['thread_buffers_MiB']:.2f} MiB "
                f"| {m['block_partials_MiB']:.2f} MiB | {m.get('step_rows_MiB', float('nan')):.2f} MiB "
                f"| {m['all_states_MiB']:.0f} MiB "
                f"| {'n/a' if rss is None else f'{rss:.1f} MiB'} |"
            )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 1, the three smaller stages, fewer repetitions")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the tensors")
    p.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads (CPU)")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions of the extension paths")
    p.add_argument("--ref-timeout", type=float, default=90.0,
                   help="seconds after which a reference measurement is cut off (reported as a lower bound)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default benchmarks/results/scan_<device>[_quick].json)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    args = p.parse_args(argv)
    if args.child:
        torch.set_num_threads(args.threads)
        kind, b, c, side, *mode = args.child
        fn = _child_reference if kind == "reference" else _child_backward_rss
        print(json.dumps(fn(int(b), int(c), int(side), *mode)))
        return 0
    out = args.out or RESULTS / f"scan_{args.device}{'_quick' if args.quick else ''}.json"
    if args.out is not None and out.exists():
        raise SystemExit(f"{out} exists: not overwriting it (remove it or pick another --out)")
    result = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(json.dumps(result["machine"]))
    print(table(result))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
