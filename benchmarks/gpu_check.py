"""Helpers of benchmarks/gpu_check.sh: the results JSON, the machine record, the mamba-ssm arch patch.

Subcommands (every one takes the output folder first where it writes):

- ``init OUT --dry 0|1 --budget S``: a fresh ``OUT/gpu_check.json``;
- ``env OUT``: the machine (GPU, driver, torch, CUDA, nvcc, tools, package versions) into it, and printed;
- ``step OUT --name N --status S ...``: one step's record (status, exit code, seconds, time limit, the
  tail of its log, pytest's counts from a JUnit file);
- ``patch-mamba SETUP_PY``: make mamba-ssm's setup.py build for ``TORCH_CUDA_ARCH_LIST`` only;
- ``splits DATA OUT_FILE``: a tiny copy of DATA/splits.json (two training tiles, one validation tile),
  for the dry run's training run;
- ``finish OUT``: merge the result files, judge the issue's goals, check the layout of OUT against what
  the device tool brings back, write the final JSON.

``gpu_check.json`` is rewritten after every step, so a run stopped at its time limit still says how far
it got.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional

SUMMARY = "gpu_check.json"
#: What the device tool brings back from $OUT (its README): files, size, depth, names.
OUT_LIMITS = {"max_files": 8, "max_file_bytes": 16 * 2**20, "max_total_bytes": 64 * 2**20, "max_depth": 3}
NAME_OK = re.compile(r"^[A-Za-z0-9._-]+$")
#: The files gpu_check.sh writes into $OUT (all of them together stay within OUT_LIMITS["max_files"]).
RESULT_FILES = {
    "bench_scan": "bench_scan.json",
    "bench_mamba": "bench_mamba.json",
    "train_step": "train_step.json",
    "train_step_mamba": "train_step_mamba.json",
    "train_metrics": "train_metrics.json",
}
LOG_FILES = ("steps.log", "mamba_build.log")
PACKAGES = ("torch", "setuptools", "wheel", "ninja", "pybind11", "packaging", "pip", "numpy", "einops", "triton",
            "safetensors", "scikit-image", "pillow", "huggingface-hub", "tqdm", "transformers", "pytest", "mamba-ssm")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _load(out: Path) -> Dict[str, Any]:
    return json.loads((out / SUMMARY).read_text())


def _save(out: Path, data: Dict[str, Any]) -> None:
    tmp = out / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, out / SUMMARY)


def _run(cmd: List[str], timeout: float = 30) -> str:
    """stdout + stderr of cmd, or '' when it is missing or fails to start."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (p.stdout + p.stderr).strip()


def _tail(path: Optional[str], lines: int = 30, width: int = 400) -> List[str]:
    if not path or not Path(path).is_file():
        return []
    text = Path(path).read_text(errors="replace").splitlines()
    return [ln[:width] for ln in text[-lines:]]


# ------------------------------------------------------------------------------------ commands


def cmd_init(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    _save(args.out, {
        "schema": 1,
        "what": "GPU bring-up of grainseg's CUDA scan kernels (issue 18): build, tests, compute-sanitizer, "
                "bench_scan against the materialised path, the reference and mamba-ssm, training step, training run",
        "dry_run": bool(args.dry),
        "dry_run_note": ("GPU_CHECK_DRY=1: run on a machine without a GPU to check the script's steps, paths and "
                         "output layout; steps that need CUDA are replaced by stand-ins (status 'dry') and every "
                         "number in here is a CPU number, not a GPU result") if args.dry else None,
        "started_utc": _now(), "finished_utc": None, "budget_s": args.budget,
        "machine": {}, "steps": [], "results": {}, "goals": {}, "out_layout": {},
    })


def _commit(repo: Path) -> Dict[str, Any]:
    head = _run(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if re.fullmatch(r"[0-9a-f]{40}", head):
        dirty = bool(_run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"]))
        return {"git_commit": head, "git_dirty": dirty, "source": "git"}
    if os.environ.get("GPU_CHECK_COMMIT"):
        return {"git_commit": os.environ["GPU_CHECK_COMMIT"], "source": "GPU_CHECK_COMMIT"}
    stamp = repo / ".carry" / "commit.txt"
    if stamp.is_file():
        return {"git_commit": stamp.read_text().strip(), "source": ".carry/commit.txt (written when .carry was prepared)"}
    return {"git_commit": None, "source": "unknown (no git, no GPU_CHECK_COMMIT)"}


def cmd_env(args) -> None:
    from importlib.metadata import PackageNotFoundError, version

    info: Dict[str, Any] = {"hostname": platform.node(), "platform": platform.platform(), "python": sys.version.split()[0],
                            "python_executable": sys.executable, "cpu_count": os.cpu_count(),
                            **_commit(Path(__file__).resolve().parents[1])}
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            prop = torch.cuda.get_device_properties(0)
            info.update(gpu=prop.name, gpu_capability=f"{prop.major}.{prop.minor}", gpu_memory_GiB=prop.total_memory / 2**30,
                        sm_count=prop.multi_processor_count, l2_cache_MiB=getattr(prop, "L2_cache_size", 0) / 2**20)
    except ImportError as exc:
        info["torch"] = f"not importable: {exc}"
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm",
                "--format=csv,noheader"])
    info["nvidia_smi"] = smi or None
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    tools = {}
    for tool in ("nvcc", "compute-sanitizer", "cuobjdump", "ninja"):
        path = shutil.which(tool) or (str(Path(cuda_home, "bin", tool)) if Path(cuda_home, "bin", tool).is_file() else None)
        tools[tool] = {"path": path, "version": (_run([path, "--version"]).splitlines() or [""])[-1] if path else None}
    info["tools"] = tools
    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pkgs[name] = None
    info["packages"] = pkgs
    data = _load(args.out)
    data["machine"] = info
    _save(args.out, data)
    print(json.dumps(info, indent=1))


def _junit_counts(path: Optional[str]) -> Optional[Dict[str, Any]]:
    if not path or not Path(path).is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
           if c.find("failure") is not None or c.find("error") is not None]
    counts["failed_tests"] = bad[:20]
    skips: Dict[str, int] = {}
    for c in root.iter("testcase"):
        s = c.find("skipped")
        if s is not None:
            why = (s.get("message") or "")[:160]
            skips[why] = skips.get(why, 0) + 1
    counts["skip_reasons"] = skips
    return counts


def cmd_step(args) -> None:
    data = _load(args.out)
    rec: Dict[str, Any] = {"name": args.name, "status": args.status, "rc": args.rc, "seconds": round(args.seconds, 1),
                           "timeout_s": args.timeout, "ended_utc": _now(), "command": args.cmd, "note": args.note,
                           "log": "steps.log" if args.log else None, "log_tail": _tail(args.log, args.tail)}
    junit = _junit_counts(args.junit)
    if junit is not None:
        rec["pytest"] = junit
    if args.extra:
        rec.update(json.loads(args.extra))
    data["steps"] = [s for s in data["steps"] if s["name"] != args.name] + [rec]
    _save(args.out, data)
    print(f"---- step {args.name}: {args.status} (rc {args.rc}, {args.seconds:.1f} s"
          f"{', limit %d s' % args.timeout if args.timeout else ''}){': ' + args.note if args.note else ''}")


_GENCODE = re.compile(r'^(\s*)cc_flag\.append\("(-gencode|arch=compute_\w+,code=sm_\w+)"\)\s*$', re.M)
_BDIST = "from wheel.bdist_wheel import bdist_wheel as _bdist_wheel"


def patch_mamba_setup(text: str) -> tuple:
    """mamba-ssm's setup.py with its hard-coded ``-gencode`` flags (nine architectures for CUDA 13) taken
    out, so that torch adds the ones of ``TORCH_CUDA_ARCH_LIST`` (torch adds none while any nvcc flag
    names an arch); and ``bdist_wheel`` imported from setuptools when ``wheel`` no longer has it.
    Returns (new text, number of gencode lines replaced)."""
    new, n = _GENCODE.subn(lambda m: f"{m.group(1)}pass  # gpu_check: arch from TORCH_CUDA_ARCH_LIST", text)
    if _BDIST in new:
        new = new.replace(_BDIST, "try:\n    " + _BDIST + "\nexcept ImportError:\n"
                          "    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel")
    return new, n


def cmd_patch_mamba(args) -> int:
    text = args.setup_py.read_text()
    new, n = patch_mamba_setup(text)
    if n == 0 or "arch=compute_" in new:
        print(f"patch-mamba: {args.setup_py}: found {n} gencode lines, "
              f"{'some arch flags remain' if 'arch=compute_' in new else 'nothing to patch'}: the sdist changed")
        return 1
    compile(new, str(args.setup_py), "exec")
    args.setup_py.write_text(new)
    print(f"patch-mamba: {args.setup_py}: {n} hard-coded gencode flags removed; builds for "
          f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(torch default)')}")
    return 0


def cmd_splits(args) -> None:
    splits = json.loads((args.data / "splits.json").read_text())
    paper = splits["paper"]
    args.out_file.write_text(json.dumps({"paper": {"train": paper["train"][:2], "val": paper["val"][:1],
                                                   "test": paper["test"][:1]}}, indent=1) + "\n")


# -------------------------------------------------------------------------------------- finish


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def judge_goals(data: Dict[str, Any]) -> Dict[str, Any]:
    """The issue's goals from the results at hand.  ``met`` is None where the results needed are missing;
    on a dry run (CPU) the values are computed to check this code, and marked as not GPU results."""
    res = data["results"]
    device = ((res.get("bench_scan") or {}).get("machine") or {}).get("device")
    note = "CPU numbers of the dry run: not the GPU goal" if data.get("dry_run") or device != "cuda" else None
    goals: Dict[str, Any] = {}

    rows = [r for r in (res.get("bench_mamba") or {}).get("rows", []) if "mamba_path_over_fused_fwd_bwd" in r]
    vals = [{"dtype": r["dtype"], "batch": r["batch"], "stage": f"{r['channels']}x{r['height']}x{r['width']}",
             "ratio": r["mamba_path_over_fused_fwd_bwd"]} for r in rows]
    stages = {(r["channels"], r["height"]) for r in rows}
    goals["fused_fwd_bwd_at_least_2x_mamba_path"] = {
        "target": 2.0, "values": vals, "min": min((v["ratio"] for v in vals), default=None),
        "stages_covered": len(stages),
        "met": (all(v["ratio"] >= 2.0 for v in vals) and len(stages) >= 4) if vals else None,
        "note": note if vals else "no mamba-ssm results (build unfinished or failed, or not on CUDA)"}

    # the largest stage: most data per image (VM-UNet-ASPP's: 192 channels at 64 x 64), at the largest batch
    rows = [r for r in (res.get("bench_scan") or {}).get("rows", []) if "fused_fwd_fraction_of_copy_bw" in r]
    size = lambda r: r["channels"] * r["height"] * r["width"]  # noqa: E731
    largest = [r for r in rows if size(r) == max(map(size, rows))]
    largest = [r for r in largest if r["batch"] == max(r["batch"] for r in largest)]
    stage = "%dx%dx%d" % (largest[0]["channels"], largest[0]["height"], largest[0]["width"]) if largest else None
    vals = [{"dtype": r["dtype"], "batch": r["batch"], "fused_fwd_GBps": r["fused"].get("fwd_GBps"),
             "fraction_of_copy_bw": r["fused_fwd_fraction_of_copy_bw"]} for r in largest]
    goals["fused_fwd_at_least_half_copy_bw_largest_stage"] = {
        "target": 0.5, "stage": stage,
        "copy_bandwidth_GBps": ((res.get("bench_scan") or {}).get("machine") or {}).get("copy_bandwidth_GBps"),
        "values": vals, "met": all(v["fraction_of_copy_bw"] >= 0.5 for v in vals) if vals else None,
        "note": note if vals else "no bandwidth results at the largest stage"}

    steps = {s["name"]: s for s in data["steps"]}
    san = {t: steps.get(t, {}).get("status") for t in ("memcheck", "racecheck")}
    goals["sanitizer_clean"] = {
        "statuses": san,
        "met": all(v == "ok" for v in san.values()) if all(v in ("ok", "failed") for v in san.values()) else None,
        "note": "not run (dry run, skipped or out of time)" if None in san.values() or "dry" in san.values()
        or "skipped" in san.values() else None}
    return goals


def check_layout(out: Path) -> Dict[str, Any]:
    """OUT against what the device tool brings back (OUT_LIMITS)."""
    files = [p for p in out.rglob("*") if p.is_file() and p.name != SUMMARY + ".tmp"]
    problems = []
    if len(files) > OUT_LIMITS["max_files"]:
        problems.append(f"{len(files)} files > {OUT_LIMITS['max_files']}")
    total = 0
    for p in files:
        rel = p.relative_to(out)
        size = p.stat().st_size
        total += size
        if size > OUT_LIMITS["max_file_bytes"]:
            problems.append(f"{rel}: {size} bytes > 16 MiB")
        if len(rel.parts) > OUT_LIMITS["max_depth"]:
            problems.append(f"{rel}: deeper than two folders")
        if not all(NAME_OK.match(part) for part in rel.parts):
            problems.append(f"{rel}: a name with characters other than letters, digits, '.', '_', '-'")
    if total > OUT_LIMITS["max_total_bytes"]:
        problems.append(f"{total} bytes in all > 64 MiB")
    return {"files": sorted(str(p.relative_to(out)) for p in files), "total_bytes": total, "limits": OUT_LIMITS,
            "problems": problems, "ok": not problems}


def truncate_log(path: Path, keep: int = 4 * 2**20) -> None:
    """Keep the last ``keep`` bytes of a log that grew past it (the first line says so)."""
    if path.is_file() and path.stat().st_size > keep:
        with path.open("rb") as f:
            f.seek(-keep, os.SEEK_END)
            tail = f.read()
        path.write_bytes(f"[gpu_check: log cut to its last {keep} bytes]\n".encode() + tail)


def cmd_finish(args) -> None:
    data = _load(args.out)
    for name in LOG_FILES:
        truncate_log(args.out / name)
    for key, fname in RESULT_FILES.items():
        got = _read_json(args.out / fname)
        if got is not None:
            data["results"][key] = got
    data["goals"] = judge_goals(data)
    data["finished_utc"] = _now()
    data["elapsed_s"] = args.elapsed
    data["step_statuses"] = {s["name"]: s["status"] for s in data["steps"]}
    data["steps_not_ok"] = [s["name"] for s in data["steps"] if s["status"] not in ("ok", "dry", "stopped")]
    _save(args.out, data)
    data["out_layout"] = check_layout(args.out)
    _save(args.out, data)
    print(f"gpu_check: {len(data['steps'])} steps in {args.elapsed:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in data["step_statuses"].items()))
    for name, goal in data["goals"].items():
        print(f"goal {name}: met={goal['met']}" + (f" ({goal['note']})" if goal.get("note") else ""))
    if not data["out_layout"]["ok"]:
        print(f"OUT layout problems: {data['out_layout']['problems']}")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="subcommand", required=True)
    s = sub.add_parser("init")
    s.add_argument("out", type=Path)
    s.add_argument("--dry", type=int, default=0)
    s.add_argument("--budget", type=int, required=True)
    s = sub.add_parser("env")
    s.add_argument("out", type=Path)
    s = sub.add_parser("step")
    s.add_argument("out", type=Path)
    s.add_argument("--name", required=True)
    s.add_argument("--status", required=True, choices=["ok", "failed", "timeout", "skipped", "dry", "stopped"])
    s.add_argument("--rc", type=int, default=None)
    s.add_argument("--seconds", type=float, default=0.0)
    s.add_argument("--timeout", type=int, default=None)
    s.add_argument("--log", default=None)
    s.add_argument("--tail", type=int, default=30)
    s.add_argument("--note", default=None)
    s.add_argument("--cmd", default=None)
    s.add_argument("--junit", default=None)
    s.add_argument("--extra", default=None, help="JSON object merged into the record")
    s = sub.add_parser("patch-mamba")
    s.add_argument("setup_py", type=Path)
    s = sub.add_parser("splits")
    s.add_argument("data", type=Path)
    s.add_argument("out_file", type=Path)
    s = sub.add_parser("finish")
    s.add_argument("out", type=Path)
    s.add_argument("--elapsed", type=float, default=0.0)
    args = p.parse_args(argv)
    handler = {"init": cmd_init, "env": cmd_env, "step": cmd_step, "patch-mamba": cmd_patch_mamba,
               "splits": cmd_splits, "finish": cmd_finish}[args.subcommand]
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
