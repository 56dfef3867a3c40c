"""Benchmark of the SS2D scan: fused kernel vs the pure-PyTorch reference vs "materialised copies + 1-D kernel".

At VM-UNet-ASPP's stage shapes for a 256x256 input (n = 16), batch 1 and 4 (``--batches``), forward and
forward+backward, fp32 (``--dtypes`` adds bf16 / fp16: u, delta, B, C in that dtype, A, D, bias fp32).
Implementations (``--impls``; the first three by default):

- ``fused``: :func:`grainseg.ops.ss2d_scan` on the extension (reads u/delta/B/C in place, four directions);
- ``materialised``: VM-UNet's way: four reordered copies (torch cross-scan), the 1-D extension scan
  :func:`grainseg.ops.selective_scan`, cross-merge (:func:`cross_scan_path`; in fp32 the same ops as
  ``reference.ss2d_scan_ref(..., scan=grainseg.ops.selective_scan)``);
- ``reference``: the pure-PyTorch reference (``use_backend("reference")``), timed once, after all the
  others, smallest sequence first (fp32 only; on CUDA at batch <= ``--ref-max-batch``, default 1, and
  until ``--ref-timeout`` seconds are spent in all);
- ``ours_1d``: the 1-D extension scan alone on the already materialised copies (no cross-scan / merge);
- ``mamba_path``: as ``materialised`` with mamba-ssm's ``selective_scan_fn`` (CUDA only, when mamba-ssm
  is installed);
- ``mamba_1d``: mamba-ssm's kernel alone on the materialised copies.

Also the backward's extra memory on CPU (unless ``--no-memory``): the checkpoint tensor and kernel
buffers (computed from the sizes the kernel allocates) and the measured peak-RSS rise during backward,
against storing every state.  With ``--bandwidth`` (default on CUDA) it measures the device's copy
bandwidth and gives every time as GB/s over the fewest bytes the problem must move (:func:`problem_bytes`).

Usage: ``python benchmarks/bench_scan.py [--quick] [--device cpu] [--threads 2] [--out FILE]``; on a GPU
e.g. ``--device cuda --batches 1,32 --dtypes fp32,bf16 --impls fused,materialised,ours_1d,reference``.
Writes JSON (with machine info) to benchmarks/results/ (rewritten after every row, ``"partial": true``
until the end) and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
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
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
IMPLS = ("fused", "materialised", "ours_1d", "reference", "mamba_path", "mamba_1d")
DEFAULT_IMPLS = ("fused", "materialised", "reference")
#: Key of each implementation in the ``{key}_over_fused_{mode}`` ratios (``ref`` as in the first results).
RATIO_KEY = {"reference": "ref"}
#: Implementations that run on the materialised 1-D copies instead of the spatial inputs.
ONE_D_IMPLS = ("ours_1d", "mamba_1d")


def copy_bandwidth(device: str, nbytes: Optional[int] = None, reps: int = 10) -> Dict[str, object]:
    """Device copy bandwidth: median time of ``dst.copy_(src)`` on a large fp32 buffer, counting the bytes
    read plus the bytes written (the ceiling a memory-bound kernel is held against)."""
    nbytes = nbytes or (2**31 if device == "cuda" else 2**27)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = time_interleaved({"copy": lambda: dst.copy_(src)}, reps, 3, device)["copy"]
    info = {"copy_buffer_MiB": nbytes / 2**20, "copy_median_s": t[1],
            "copy_bandwidth_GBps": 2 * nbytes / t[1] / 1e9, "statistic": "median; bytes read + written"}
    if device == "cuda":
        prop = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(l2_cache_MiB=getattr(prop, "L2_cache_size", 0) / 2**20, sm_count=prop.multi_processor_count)
    del src, dst
    return info


def machine_info(device: str) -> Dict[str, object]:
    """CPU model, cores, flags of interest, torch version, date and git commit (and the GPU on CUDA)."""
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
        "git_commit": commit or os.environ.get("GPU_CHECK_COMMIT", ""),
        "device": device,
        "backend": ops.backend(device),
        # the machine is shared: the 1-minute load average at the start says how contended the timings are
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["torch_cuda"] = torch.version.cuda
    return info


def make_inputs(b: int, c: int, side: int, n: int, device: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """SS2D arguments shaped like VM-UNet's (softplus dt around 0.01..0.1, A = -(1..n)); u, delta, B and C
    in ``dtype`` (drawn in fp32, then rounded), A, D and bias in fp32."""
    g = torch.Generator().manual_seed(seed)
    h = w = side
    u = torch.randn(b, c, h, w, generator=g)
    delta = torch.randn(b, 4, c, h, w, generator=g) * 0.5
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(4, c, 1)
    B = torch.randn(b, 4, n, h, w, generator=g)
    C = torch.randn(b, 4, n, h, w, generator=g)
    D = torch.ones(4, c)
    bias = torch.full((4, c), -3.0)
    return [t.to(device=device, dtype=dtype if i in (0, 1, 3, 4) else torch.float32)
            for i, t in enumerate((u, delta, A, B, C, D, bias))]


def problem_bytes(b: int, c: int, side: int, n: int, dtype: torch.dtype) -> Dict[str, int]:
    """The fewest bytes the SS2D problem must move through device memory: forward reads u, delta, B, C
    (in ``dtype``) and A, D, bias (fp32) once and writes y; the backward reads dy, u, delta, B, C and the
    weights and writes du, ddelta, dB, dC and the weight gradients.  Checkpoints, partial sums and
    re-reads are the implementation's and not counted."""
    e = torch.empty(0, dtype=dtype).element_size()
    L = side * side
    act = b * c * L  # u, y, dy, du
    dirs = b * 4 * c * L  # delta, ddelta
    bc = 2 * b * 4 * n * L  # B and C (or their gradients)
    weights = 4 * (4 * c * n + 2 * 4 * c)
    fwd = e * (2 * act + dirs + bc) + weights
    bwd = e * (2 * act + dirs + bc) + e * (act + dirs + bc) + 2 * weights
    return {"fwd": fwd, "fwd_bwd": fwd + bwd}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: Dict[str, Callable[[], object]], reps: int, warmup: int,
                     device: str) -> Dict[str, Tuple[float, float]]:
    """(min, median) wall time in seconds of every fn, timed in turns (a, b, a, b, ...) so that a change
    in machine load during the run hits every implementation alike and their ratios stay fair.  The table
    uses the minimum: on a shared machine it is the least disturbed by other processes; the JSON keeps both.
    On CUDA each run is timed with CUDA events (the device finishing the run, launches included)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


# ------------------------------------------------------------------------- implementations


def materialise(u, delta, A, B, C, D, bias) -> List[torch.Tensor]:
    """VM-UNet's cross-scan: the four direction-ordered copies as one 1-D problem of 4c channels
    (u, delta: (b, 4c, L); A: (4c, n); B, C: (b, 4, n, L) grouped by direction; D, bias: (4c,)), in the
    inputs' dtypes."""
    b, c, h, w = u.shape
    K, L = reference.NUM_DIRECTIONS, h * w
    order = lambda t: torch.stack([reference.direction_order(t[:, k], k) for k in range(K)], dim=1)  # noqa: E731
    return [reference.cross_scan(u).reshape(b, K * c, L), order(delta).reshape(b, K * c, L), A.reshape(K * c, -1),
            order(B), order(C), D.reshape(-1), bias.reshape(-1)]


def one_d(scan: Callable) -> Callable:
    """A mamba-style ``selective_scan_fn`` called on :func:`materialise`'s outputs (softplus dt)."""
    def run(u, delta, A, B, C, D, bias):
        return scan(u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True)
    return run


def cross_scan_path(scan: Callable) -> Callable:
    """The SS2D scan VM-UNet's way: materialise the copies, 1-D ``scan`` over them, cross-merge."""
    run_1d = one_d(scan)

    def run(u, delta, A, B, C, D, bias):
        b, c, h, w = u.shape
        ys = run_1d(*materialise(u, delta, A, B, C, D, bias))
        return reference.cross_merge(ys.reshape(b, reference.NUM_DIRECTIONS, c, h * w), h, w)
    return run


def load_mamba_scan() -> Tuple[Optional[Callable], str]:
    """mamba-ssm's ``selective_scan_fn`` and a description, or (None, why not).

    ``import mamba_ssm`` runs its ``__init__``, which imports every model (Mamba3 needs tilelang and
    quack-kernels); when that fails, only ``mamba_ssm.ops.selective_scan_interface`` is loaded, under a
    bare package module, which needs just the compiled ``selective_scan_cuda``, einops and triton."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        how = "import mamba_ssm"
    except Exception as first:  # noqa: BLE001 - any import failure means: try the bare module
        for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("mamba_ssm")
        if spec is None or not spec.submodule_search_locations:
            return None, f"mamba-ssm is not installed ({type(first).__name__}: {first})"
        pkg = types.ModuleType("mamba_ssm")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["mamba_ssm"] = pkg
        try:
            selective_scan_fn = importlib.import_module("mamba_ssm.ops.selective_scan_interface").selective_scan_fn
        except Exception as exc:  # noqa: BLE001
            return None, f"mamba-ssm does not import ({type(first).__name__}: {first}; then {type(exc).__name__}: {exc})"
        how = f"mamba_ssm.ops.selective_scan_interface alone (import mamba_ssm: {type(first).__name__}: {first})"
    try:
        from importlib.metadata import version
        how = f"mamba-ssm {version('mamba_ssm')}, {how}"
    except Exception:  # noqa: BLE001 - the version is only for the record
        pass
    return selective_scan_fn, how


def implementations(mamba_scan: Optional[Callable] = None) -> Dict[str, Callable]:
    def fused(u, delta, A, B, C, D, bias):
        return ss2d_scan(u, delta, A, B, C, D, bias, delta_softplus=True)

    def ref(u, delta, A, B, C, D, bias):
        with use_backend("reference"):
            return ss2d_scan(u, delta, A, B, C, D, bias, delta_softplus=True)

    impls = {"fused": fused, "materialised": cross_scan_path(selective_scan), "ours_1d": one_d(selective_scan),
             "reference": ref}
    if mamba_scan is not None:
        impls.update(mamba_path=cross_scan_path(mamba_scan), mamba_1d=one_d(mamba_scan))
    return impls


def bench(impls: Dict[str, Callable], inputs: List[torch.Tensor], reps: int, warmup: int, device: str,
          modes=("fwd", "fwd_bwd"), inputs_for: Optional[Dict[str, List[torch.Tensor]]] = None
          ) -> Dict[str, Dict[str, float]]:
    """Per implementation, ``{mode}_s`` (min) and ``{mode}_median_s`` for forward and forward+backward
    (gradients of every input), the implementations timed in turns.  ``inputs_for`` gives an
    implementation other inputs than ``inputs`` (the 1-D ones run on the materialised copies)."""
    def leaves_of(ts):
        return [t.detach().requires_grad_() for t in ts]

    leaves = {name: leaves_of((inputs_for or {}).get(name, inputs)) for name in impls}
    cots = {name: torch.randn(ls[0].shape, device=device).to(ls[0].dtype) for name, ls in leaves.items()}

    def fwd(name, fn):
        def run():
            with torch.no_grad():
                return fn(*leaves[name])
        return run

    def fwd_bwd(name, fn):
        def run():
            y = fn(*leaves[name])
            torch.autograd.grad(y, leaves[name], cots[name])
        return run

    makers = {"fwd": fwd, "fwd_bwd": fwd_bwd}
    out: Dict[str, Dict[str, float]] = {name: {} for name in impls}
    for m in modes:
        timed = time_interleaved({name: makers[m](name, fn) for name, fn in impls.items()}, reps, warmup, device)
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


def _reference_skipped(dtype: torch.dtype, b: int, args) -> Optional[str]:
    """Why the reference is not timed at this dtype and batch (None: it is)."""
    if dtype != torch.float32:
        return "reference timed in fp32 only (it computes in fp32 whatever the inputs)"
    if args.ref_max_batch is not None and b > args.ref_max_batch:
        return f"reference timed at batch <= {args.ref_max_batch} only (--ref-max-batch)"
    return None


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


def _print_row(row: Dict[str, object], names: List[str], timeout: Optional[float]) -> None:
    head = f"  {row['dtype']} b={row['batch']} c={row['channels']} {row['height']}x{row['width']}"
    for name in names:
        t = row[name]
        if "fwd_s" not in t:
            print(f"{head} {name:12s} {t.get('skipped', 'not run')}", flush=True)
        else:
            print(f"{head} {name:12s} fwd {_fmt_time(t['fwd_s'], timeout):>10s}"
                  f"   fwd+bwd {_fmt_time(t['fwd_bwd_s'], timeout):>10s}", flush=True)


def _finish_row(row: Dict[str, object], names: List[str], copy_gbps: Optional[float], bandwidth: bool) -> None:
    """Ratios of every measured implementation over the fused op (and GB/s); again after the reference."""
    for mode in ("fwd", "fwd_bwd"):
        for name in names:
            if name == "fused" or not _measured(row, name):
                continue
            key = RATIO_KEY.get(name, name)
            ratio, lower = _ratio(row, name, mode)
            row[f"{key}_over_fused_{mode}"] = ratio
            row[f"{key}_over_fused_{mode}_is_lower_bound"] = lower
    if bandwidth:
        _add_bandwidth(row, copy_gbps, getattr(torch, row["dtype"]))


def _measured(row: Dict[str, object], name: str) -> bool:
    return isinstance(row.get(name), dict) and "fwd_s" in row[name]


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


def _parse_list(text: str, conv=str) -> list:
    return [conv(x) for x in text.replace(" ", "").split(",") if x]


def _parse_stage(text: str) -> Tuple[int, int]:
    c, side = text.lower().split("x")
    return int(c), int(side)


def _add_bandwidth(row: Dict[str, object], copy_gbps: Optional[float], dtype: torch.dtype) -> None:
    """GB/s of every measured implementation over the problem's fewest bytes, and the fused forward's
    fraction of the copy bandwidth."""
    nbytes = problem_bytes(row["batch"], row["channels"], row["height"], row["d_state"], dtype)
    row["problem_bytes"] = nbytes
    for name in IMPLS:
        if not _measured(row, name):
            continue
        for mode in ("fwd", "fwd_bwd"):
            t = row[name].get(f"{mode}_s")
            if t:
                row[name][f"{mode}_GBps"] = nbytes[mode] / t / 1e9
    if copy_gbps:
        row["fused_fwd_fraction_of_copy_bw"] = row["fused"]["fwd_GBps"] / copy_gbps
        row["fused_fwd_bwd_fraction_of_copy_bw"] = row["fused"]["fwd_bwd_GBps"] / copy_gbps


def run(args, on_row: Optional[Callable[[Dict[str, object]], None]] = None) -> Dict[str, object]:
    torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if ops.backend(device) == "reference":
        raise SystemExit(f"the extension has no {device} kernels: nothing to benchmark (build grainseg._C)")
    if args.ref_max_batch is None and device == "cuda":
        args.ref_max_batch = 1
    batches = args.batches or ([1] if args.quick else [1, 4])
    stages = args.stages or (STAGES[1:] if args.quick else STAGES)
    names = list(args.impls or DEFAULT_IMPLS)
    if "fused" not in names:
        names.insert(0, "fused")  # every ratio is over the fused op
    skipped: Dict[str, str] = {}
    mamba_scan, mamba_how = None, None
    if any(n.startswith("mamba") for n in names):
        mamba_scan, mamba_how = load_mamba_scan() if device == "cuda" else (None, "mamba-ssm runs on CUDA only")
        if mamba_scan is None:
            skipped.update({n: mamba_how for n in names if n.startswith("mamba")})
            names = [n for n in names if not n.startswith("mamba")]
    impls = implementations(mamba_scan)
    timed_names = [n for n in names if n != "reference"]
    reps = 2 if args.quick else args.reps
    machine = machine_info(device)
    if mamba_how:
        machine["mamba_ssm"] = mamba_how
    bandwidth = args.bandwidth if args.bandwidth is not None else device == "cuda"
    if bandwidth:
        machine.update(copy_bandwidth(device, int(args.copy_mib * 2**20) if args.copy_mib else None))
    copy_gbps = machine.get("copy_bandwidth_GBps")
    rows = []
    result = {
        "machine": machine,
        "quick": args.quick,
        "partial": True,
        "repetitions": {**{n: reps for n in timed_names}, "reference": 1,
                        "warmup": args.warmup,
                        "statistic": "min (also *_median_s) after the warm-up runs; all but the reference timed in turns"},
        "reference_timeout_s": args.ref_timeout,
        "reference_max_batch": args.ref_max_batch,
        "implementations": names,
        "skipped_implementations": skipped,
        "dtypes": [str(DTYPES[d]).replace("torch.", "") for d in args.dtypes],
        "rows": rows,
        "targets": {"ref_over_fused_fwd_bwd": 25.0, "materialised_over_fused_fwd_bwd": 1.3},
    }
    if device == "cuda":
        result["targets"].update(mamba_path_over_fused_fwd_bwd=2.0, fused_fwd_fraction_of_copy_bw_largest_stage=0.5)
    pending_reference = []  # rows whose reference is timed after every other measurement
    for dname in args.dtypes:
        dtype = DTYPES[dname]
        for b in batches:
            for c, side in stages:
                inputs = make_inputs(b, c, side, D_STATE, device, dtype=dtype)
                row: Dict[str, object] = {"batch": b, "channels": c, "height": side, "width": side,
                                          "d_state": D_STATE, "dtype": str(dtype).replace("torch.", "")}
                one_d_inputs = [t.detach() for t in materialise(*inputs)] if set(ONE_D_IMPLS) & set(names) else None
                row.update(bench({k: impls[k] for k in timed_names}, inputs, reps, args.warmup, device,
                                 inputs_for={k: one_d_inputs for k in ONE_D_IMPLS if k in timed_names}))
                del one_d_inputs
                if "reference" in names:
                    why = _reference_skipped(dtype, b, args)
                    row["reference"] = {"skipped": why or "not timed yet"}
                    if why is None:
                        pending_reference.append(row)
                _print_row(row, timed_names, args.ref_timeout)
                _finish_row(row, names, copy_gbps if bandwidth else None, bandwidth)
                if device == "cpu" and args.memory:
                    mem = computed_memory(inputs, args.threads)
                    mem.update(in_child(["rss", str(b), str(c), str(side)], 600, args.threads,
                                        env={"MALLOC_MMAP_THRESHOLD_": "65536"}) or {})
                    row["memory"] = mem
                rows.append(row)
                del inputs
                if device == "cuda":
                    torch.cuda.empty_cache()
                if on_row is not None:
                    on_row(result)
    # The reference last, smallest sequence first: one of its runs cannot be cut short in-process (on
    # CUDA), so a slow one delays only what comes after it, and past --ref-timeout seconds in all (CUDA)
    # the rest is left out.
    spent, t_ref = 0.0, time.perf_counter()
    for row in sorted(pending_reference, key=lambda r: (r["height"] * r["width"], r["batch"])):
        if device != "cpu" and spent > args.ref_timeout:
            row["reference"] = {"skipped": f"the reference's time (--ref-timeout {args.ref_timeout:.0f} s in all) was spent"}
        else:
            # (on CPU the child processes make their own inputs)
            inputs = make_inputs(row["batch"], row["channels"], row["height"], D_STATE, device) if device != "cpu" else None
            row["reference"] = _time_reference(inputs, row["batch"], row["channels"], row["height"], args)
            del inputs
            spent = time.perf_counter() - t_ref
        _print_row(row, ["reference"], args.ref_timeout)
        _finish_row(row, names, copy_gbps if bandwidth else None, bandwidth)
        if on_row is not None:
            on_row(result)
    result["partial"] = False
    return result


def table(result: Dict[str, object]) -> str:
    """Markdown tables: timings and ratios, then (CPU) the backward's memory.  Results with other
    implementations than the default three, or rows without a reference time, get :func:`table_wide`."""
    rows = result["rows"]
    if list(result.get("implementations", DEFAULT_IMPLS)) != list(DEFAULT_IMPLS) or not all(
            _measured(r, n) for r in rows for n in DEFAULT_IMPLS):
        return table_wide(result)
    head = ("| batch | c | h x w | fused fwd | fused f+b | mat. fwd | mat. f+b | ref fwd | ref f+b "
            "| ref/fused f+b | mat./fused f+b | ref/fused fwd | mat./fused fwd |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    timeout = result.get("reference_timeout_s")

    def ratio(r, key, mode):
        lb = r[f"{key}_over_fused_{mode}_is_lower_bound"]
        return f"{'> ' if lb else ''}{r[f'{key}_over_fused_{mode}']:.{1 if key == 'ref' else 2}f}x"

    for r in rows:
        cells = [r["batch"], r["channels"], f"{r['height']}x{r['width']}"]
        for name in ("fused", "materialised", "reference"):
            cells += [_fmt_time(r[name]["fwd_s"], timeout), _fmt_time(r[name]["fwd_bwd_s"], timeout)]
        cells += [ratio(r, "ref", "fwd_bwd"), ratio(r, "materialised", "fwd_bwd"), ratio(r, "ref", "fwd"),
                  ratio(r, "materialised", "fwd")]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    lines += _memory_table(rows)
    return "\n".join(lines)


def table_wide(result: Dict[str, object]) -> str:
    """One row per (dtype, batch, stage): the fused op's times (and GB/s, share of the copy bandwidth),
    then every other implementation's forward+backward and forward time over the fused op's."""
    names = [n for n in result.get("implementations", DEFAULT_IMPLS) if n != "fused"]
    head = "| dtype | batch | c | h x w | fused fwd | fused f+b | fused fwd GB/s |"
    for n in names:
        head += f" {n} f+b / fused | {n} fwd / fused |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    timeout = result.get("reference_timeout_s")
    for r in result["rows"]:
        f = r["fused"]
        gbps = f"{f['fwd_GBps']:.3g}" if "fwd_GBps" in f else "n/a"
        if "fused_fwd_fraction_of_copy_bw" in r:
            gbps += f" ({100 * r['fused_fwd_fraction_of_copy_bw']:.0f} % of copy)"
        cells = [r.get("dtype", "float32"), r["batch"], r["channels"], f"{r['height']}x{r['width']}",
                 _fmt_time(f["fwd_s"], timeout), _fmt_time(f["fwd_bwd_s"], timeout), gbps]
        for n in names:
            for mode in ("fwd_bwd", "fwd"):
                key = f"{RATIO_KEY.get(n, n)}_over_fused_{mode}"
                cells.append(f"{'> ' if r.get(key + '_is_lower_bound') else ''}{r[key]:.2f}x" if key in r else "n/a")
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    lines += _memory_table(result["rows"])
    if result["machine"].get("copy_bandwidth_GBps"):
        lines.append(f"\ncopy bandwidth: {result['machine']['copy_bandwidth_GBps']:.0f} GB/s (read + write)")
    return "\n".join(lines)


def _memory_table(rows: List[Dict[str, object]]) -> List[str]:
    if not any("memory" in r for r in rows):
        return []
    lines = ["", "| batch | c | h x w | L | ckpt | ckpt floats / lane | thread buffers | dB/dC block partials "
             "| B/C step rows | all states (not stored) | measured bwd peak-RSS rise - gradients |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
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
    return lines


def write_json(path: Path, result: Dict[str, object], indent: int = 1) -> None:
    """Write a results JSON (values JSON cannot hold, such as paths, as their str) through a temporary
    file, so that a run stopped mid-write keeps the previous complete file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=indent, default=str) + "\n")
    tmp.replace(path)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 1, the three smaller stages, fewer repetitions")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the tensors")
    p.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads (CPU)")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions of the extension paths")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each implementation first")
    p.add_argument("--batches", type=lambda s: _parse_list(s, int), default=None,
                   help="comma-separated batch sizes (default 1,4; --quick: 1)")
    p.add_argument("--stages", type=lambda s: _parse_list(s, _parse_stage), default=None,
                   help="comma-separated CxSIDE shapes, e.g. 192x64,384x32 (default: the four VM-UNet-ASPP stages)")
    p.add_argument("--dtypes", type=_parse_list, default=["fp32"], help=f"comma-separated, of {', '.join(DTYPES)}")
    p.add_argument("--impls", type=_parse_list, default=None,
                   help=f"comma-separated, of {', '.join(IMPLS)} (default {','.join(DEFAULT_IMPLS)})")
    p.add_argument("--ref-timeout", type=float, default=90.0,
                   help="seconds after which a reference measurement is cut off (reported as a lower bound)")
    p.add_argument("--ref-max-batch", type=int, default=None,
                   help="time the reference only up to this batch (default: every batch on CPU, 1 on CUDA)")
    p.add_argument("--bandwidth", action=argparse.BooleanOptionalAction, default=None,
                   help="measure the copy bandwidth and report GB/s (default: on for CUDA)")
    p.add_argument("--copy-mib", type=float, default=None,
                   help="buffer of the copy-bandwidth measurement (default 2048 MiB on CUDA, 128 on CPU)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="the CPU backward's memory table (child processes; default on)")
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
    for name, allowed in (("dtypes", DTYPES), ("impls", IMPLS)):
        bad = [x for x in (getattr(args, name) or []) if x not in allowed]
        if bad:
            p.error(f"--{name}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    out = args.out or RESULTS / f"scan_{args.device}{'_quick' if args.quick else ''}.json"
    if args.out is not None and out.exists():
        raise SystemExit(f"{out} exists: not overwriting it (remove it or pick another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)

    result = run(args, on_row=lambda partial: write_json(out, partial))
    write_json(out, result)
    print()
    print(json.dumps(result["machine"]))
    print(table(result))
    if result["skipped_implementations"]:
        print(f"\nskipped: {json.dumps(result['skipped_implementations'])}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
