"""Whole-model CPU benchmark: the compiled scan extension against the pure-PyTorch reference.

For each model (default: the paper's ``vmunet_aspp`` and ``vmunet_aspp_small``) and each backend
(``extension``, ``reference``), at batch 1 and 256x256 by default, it measures

- forward latency in eval / inference mode (median of ``--repeat`` runs after ``--warmup``; every
  worker first runs one cheap 32x32 forward + backward so one-time costs stay out of the timings);
- forward + backward time in training mode (loss = mean of the logits), median likewise;
- memory: ``forward_backward_peak_rss_mib``, the RSS growth during the last timed forward + backward
  step, sampled every millisecond (an underestimate when heap freed by earlier steps is reused), and
  ``process_peak_above_model_mib``, the process' high-water RSS (VmHWM) above the level right after
  the model was built, which covers every forward and backward run (CPU tensors have no allocator
  statistics).

Every (model, backend) pair runs in its own subprocess, so memory and thread state do not leak
between measurements; a worker past its time limit is stopped, its finished phases are kept and the
unfinished one is recorded as a lower bound.  Results go to ``--out`` (JSON, rewritten after every
worker) and a table is printed.

    OMP_NUM_THREADS=2 python benchmarks/bench_model.py --out benchmarks/results/model_cpu.json
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

BACKENDS = ("extension", "reference")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """The process' high-water RSS (VmHWM): covers every step so far, freed or not."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class PeakRSS:
    """Context manager: peak RSS above the entry level, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval, self.peak, self.base = interval, 0, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.base = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn, warmup: int, repeat: int) -> List[float]:
    """Seconds of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _emit(record: Dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def worker(model_name: str, backend: str, size: int, batch: int, warmup: int, repeat: int) -> None:
    """Measure one (model, backend) pair in this process; prints one JSON line per finished phase."""
    import torch

    import grainseg
    from grainseg.ops import use_backend

    torch.manual_seed(0)
    model = grainseg.create_model(model_name)
    x = torch.rand(batch, model.in_chans, size, size)
    built_rss = _rss_bytes()
    with use_backend(backend):
        head = {"model": model_name, "backend": backend, "resolved_backend": grainseg.ops.backend(),
                "num_params": sum(p.numel() for p in model.parameters()), "input": list(x.shape)}

        def forward():
            with torch.inference_mode():
                model(x)

        def forward_backward():
            model.zero_grad(set_to_none=True)
            model(x).mean().backward()

        small = torch.rand(1, model.in_chans, 32, 32)  # one cheap pass first: lazy init, allocator, caches
        model(small).mean().backward()
        with torch.inference_mode():
            model.eval()(small)
        _emit({"started": "forward", "at": time.time()})
        fwd = timed(forward, warmup, repeat)
        _emit({**head, "phase": "forward", "forward_s": statistics.median(fwd), "forward_runs_s": fwd})
        model.train()
        _emit({"started": "forward_backward", "at": time.time()})
        fwd_bwd = timed(forward_backward, warmup, max(repeat - 1, 1) - 1)
        model.zero_grad(set_to_none=True)
        with PeakRSS() as mem:  # the last timed forward + backward also gives the peak memory
            fwd_bwd += timed(forward_backward, 0, 1)
        _emit({**head, "phase": "forward_backward", "forward_backward_s": statistics.median(fwd_bwd),
               "forward_backward_runs_s": fwd_bwd, "forward_backward_peak_rss_mib": round(mem.delta_mib, 1),
               "process_peak_above_model_mib": round((_peak_rss_bytes() - built_rss) / 2**20, 1)})


def _run_worker(cmd: List[str], timeout: float, model: str, backend: str) -> Dict[str, Any]:
    """Run one worker; merge its phase records.  On timeout keep the finished phases and say so."""
    peak_at_stop = None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:  # the worker's high-water RSS so far, before stopping it
            with open(f"/proc/{proc.pid}/status") as f:
                hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
            peak_at_stop = round(hwm / 1024, 1)
        except (OSError, StopIteration):
            peak_at_stop = None
        proc.kill()
        proc.wait()
    reader.join()
    stopped = time.time()
    merged: Dict[str, Any] = {"model": model, "backend": backend}
    started: Dict[str, float] = {}
    for line in lines:
        if line.startswith("{"):
            record = json.loads(line)
            if "started" in record:
                started[record["started"]] = record["at"]
            else:
                merged.update(record)
    merged.pop("phase", None)
    for phase in ("forward", "forward_backward"):
        if f"{phase}_s" not in merged:
            merged["unfinished"] = {
                "phase": phase,
                "gave_up_after_s": round(stopped - started[phase], 1) if phase in started else None,
                "note": "stopped at the time limit: one run of this phase (warm-up included) takes longer "
                "than gave_up_after_s, a lower bound",
                "process_peak_rss_mib_at_stop": peak_at_stop,
            }
            break
    return merged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["vmunet_aspp", "vmunet_aspp_small"])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--reference-repeat", type=int, default=1, help="repeats for the (slow) reference backend")
    p.add_argument("--reference-timeout", type=float, default=1800.0,
                   help="seconds before a reference worker is stopped (finished phases are kept; the rest is a lower bound)")
    p.add_argument("--extension-timeout", type=float, default=1800.0)
    p.add_argument("--out", type=Path, help="write the results as JSON here (refuses to overwrite without --force)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "BACKEND"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("size", "batch", "repeat", "reference_repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.worker:
        model, backend = args.worker
        worker(model, backend, args.size, args.batch, args.warmup, args.repeat)
        return 0
    if args.out and args.out.exists() and not args.force:
        p.error(f"{args.out} exists; pass --force to overwrite it")

    import torch

    results = []
    for model in args.models:
        for backend in args.backends:
            repeat = args.reference_repeat if backend == "reference" else args.repeat
            warmup = 0 if backend == "reference" else args.warmup
            cmd = [sys.executable, __file__, "--worker", model, backend, "--size", str(args.size),
                   "--batch", str(args.batch), "--warmup", str(warmup), "--repeat", str(repeat)]
            timeout = args.reference_timeout if backend == "reference" else args.extension_timeout
            print(f"running {model} on {backend} (time limit {timeout:.0f} s) ...", file=sys.stderr, flush=True)
            results.append(_run_worker(cmd, timeout, model, backend))
            if args.out:  # keep what is measured so far
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"partial": True, "results": results}, indent=2) + "\n")
    by = {(r["model"], r["backend"]): r for r in results}
    speedups = {}
    for model in args.models:
        ext, ref = by.get((model, "extension")), by.get((model, "reference"))
        if ext and ref:
            speedups[model] = {}
            for key in ("forward", "forward_backward"):
                if f"{key}_s" in ext and f"{key}_s" in ref:
                    speedups[model][key] = ref[f"{key}_s"] / ext[f"{key}_s"]
                elif f"{key}_s" in ext and (ref.get("unfinished") or {}).get("gave_up_after_s") and ref["unfinished"]["phase"] == key:
                    speedups[model][f"{key}_at_least"] = ref["unfinished"]["gave_up_after_s"] / ext[f"{key}_s"]
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"size": args.size, "batch": args.batch, "warmup": args.warmup, "repeat": args.repeat,
                     "reference_repeat": args.reference_repeat},
        "results": results,
        "speedup_extension_over_reference": speedups,
    }
    def cell(r: Dict[str, Any], key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "n/a"

    print(f"{'model':<20}{'backend':<11}{'params':>12}{'forward s':>11}{'fwd+bwd s':>11}{'peak MiB':>10}")
    for r in results:
        print(f"{r['model']:<20}{r.get('resolved_backend', r['backend']):<11}{cell(r, 'num_params', ','):>12}"
              f"{cell(r, 'forward_s', '.3f'):>11}{cell(r, 'forward_backward_s', '.3f'):>11}"
              f"{cell(r, 'forward_backward_peak_rss_mib', '.0f'):>10}" + (f"  unfinished: {r['unfinished']}" if "unfinished" in r else ""))
    for model, sp in speedups.items():
        print(f"{model}: extension speed-up over the reference: " + ", ".join(f"{k} {v:.1f}x" for k, v in sp.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
