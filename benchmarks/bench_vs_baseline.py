"""Training step and inference forward of this tree against a baseline tree, side by side in one run.

``bench_train_step.py`` compares settings of one build.  A kernel or layer change needs the old code
beside the new, and two builds of the extension cannot live in one process (both register the
``grainseg::`` ops), so this script alternates worker processes: in every round it runs the baseline
tree and this tree (in turns, the order swapped every round) on the same pinned core; each worker builds
the model from seed 0, warms up, then times ``--steps`` training steps (zero_grad, forward, BCE, backward,
Adam, lr 1e-4, one fixed random batch) and, with ``--forward``, as many eval-mode forwards without grad.
A worker sets up the process as the tree's trainer does (``grainseg._allocator.keep_freed_memory`` where
the tree has it).
The reported time of a setting is the minimum over all its timed steps (median beside it).

A *setting* is ``tree:amp/adam``: ``base:off/loop`` is the baseline's fp32 step with torch's loop Adam
(the trainer before fused Adam), ``new:bf16/fused`` this tree's bfloat16 autocast with fused Adam.

The baseline tree is a directory holding a built copy of the package (``grainseg/`` with its ``_C``
extension), e.g. for the commit before a change::

    git archive ae0e8f0 --prefix=baseline_ae0e8f0/ | tar -x -C runs/
    (cd runs/baseline_ae0e8f0 && python setup.py build_ext --inplace)
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_vs_baseline.py --baseline runs/baseline_ae0e8f0 \\
        --models vmunet_aspp --batches 1,4 --settings base:off/loop,new:off/loop,new:off/fused,new:bf16/fused \\
        --forward --rounds 3 --steps 3 --out benchmarks/results/train_step_vs_baseline.json

Writes JSON (machine info, each worker's package path and commit, every timed step) and prints a table
with the speedup of every setting over the first.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AMPS = ("off", "bf16")
ADAMS = ("loop", "fused")


def _worker(args: argparse.Namespace) -> int:
    """Runs in the tree under test (PYTHONPATH): prints one JSON line of step / forward times."""
    import torch
    import torch.nn.functional as F

    import grainseg

    try:  # what the trainer and the CLI do in the tree under test (absent in older trees)
        from grainseg._allocator import keep_freed_memory
        kept = keep_freed_memory()
    except ImportError:
        kept = None
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = grainseg.create_model(args.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, **({"fused": True} if args.adam == "fused" else {}))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, model.in_chans, args.size, args.size, generator=g)
    y = (torch.rand(args.batch, 1, args.size, args.size, generator=g) > 0.5).float()
    amp = args.amp == "bf16"

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        loss.backward()
        opt.step()
        return loss.item()

    def forward() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            model(x)

    from bench_model import timed  # this script's folder is first on sys.path

    losses = [step() for _ in range(args.warmup)]
    steps = timed(step, 0, args.steps)
    fwd: List[float] = []
    if args.forward:
        model.eval()
        fwd = timed(forward, args.warmup, args.steps)
    ops = sys.modules.get("grainseg.ops")
    cap = getattr(ops, "cpu_capability", None) if ops is not None else None
    print(json.dumps({"package": grainseg.__file__, "steps_s": steps, "forward_s": fwd, "warmup_losses": losses,
                      "cpu_capability": cap() if callable(cap) else None, "threads": torch.get_num_threads(),
                      "keep_freed_memory": kept}))
    return 0


def _commit(tree: Path) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        return out or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _run_worker(tree: Path, setting: str, model: str, batch: int, a: argparse.Namespace) -> Dict[str, object]:
    amp, adam = setting.split("/")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model, "--batch", str(batch),
           "--size", str(a.size), "--amp", amp, "--adam", adam, "--steps", str(a.steps), "--warmup", str(a.warmup)]
    if a.forward:
        cmd.append("--forward")
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # run from the tree itself, so that its package wins over an installed (e.g. editable) one
    res = subprocess.run(cmd, cwd=str(tree), env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"worker {tree}:{setting} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if Path(out["package"]).resolve().parents[1] != tree.resolve():
        raise RuntimeError(f"worker for {tree} imported grainseg from {out['package']}")
    return out


def _parse_settings(text: str) -> List[tuple]:
    settings = []
    for item in text.split(","):
        tree, _, rest = item.strip().partition(":")
        amp, _, adam = rest.partition("/")
        if tree not in ("base", "new") or amp not in AMPS or adam not in ADAMS:
            raise argparse.ArgumentTypeError(
                f"--settings: {item!r} is not tree:amp/adam with tree base|new, amp {'|'.join(AMPS)}, "
                f"adam {'|'.join(ADAMS)}")
        settings.append((tree, f"{amp}/{adam}"))
    return settings


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--amp", default="off", choices=AMPS, help=argparse.SUPPRESS)
    p.add_argument("--adam", default="fused", choices=ADAMS, help=argparse.SUPPRESS)
    p.add_argument("--baseline", type=Path, help="directory with a built copy of the baseline package")
    p.add_argument("--models", default="vmunet_aspp", help="comma-separated model names")
    p.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    p.add_argument("--settings", type=_parse_settings, default=_parse_settings("base:off/loop,new:off/fused"),
                   help="comma-separated tree:amp/adam; the first is the reference of the speedups")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per worker (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per worker first (default 2)")
    p.add_argument("--forward", action="store_true", help="also time eval-mode forwards without grad")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the workers")
    p.add_argument("--out", type=Path, help="JSON output")
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a)
    if a.baseline is None or not (a.baseline / "grainseg").is_dir():
        p.error(f"--baseline must be a directory holding grainseg/ (a built copy of the package), got {a.baseline}")
    trees = {"base": a.baseline, "new": ROOT}
    sys.path.insert(0, str(HERE))
    from bench_scan import machine_info, write_json  # noqa: E402

    record: Dict[str, object] = {
        "machine": machine_info("cpu"), "baseline": str(a.baseline), "baseline_commit": _commit(a.baseline),
        "statistic": "min (and median) over every timed step of all rounds; workers alternate, order swapped "
                     "each round", "settings": [f"{t}:{s}" for t, s in a.settings],
        "rounds": a.rounds, "steps_per_round": a.steps, "warmup": a.warmup, "rows": []}
    for model in a.models.split(","):
        for batch in (int(b) for b in a.batches.split(",")):
            times: Dict[str, Dict[str, List[float]]] = {f"{t}:{s}": {"steps_s": [], "forward_s": []}
                                                        for t, s in a.settings}
            info: Dict[str, Dict[str, object]] = {}
            for r in range(a.rounds):
                order = a.settings if r % 2 == 0 else list(reversed(a.settings))
                for tree, setting in order:
                    out = _run_worker(trees[tree], setting, model, batch, a)
                    key = f"{tree}:{setting}"
                    times[key]["steps_s"] += out["steps_s"]
                    times[key]["forward_s"] += out["forward_s"]
                    info[key] = {k: out.get(k) for k in ("package", "cpu_capability", "threads", "warmup_losses",
                                                         "keep_freed_memory")}
                    print(f"  {model} b{batch} round {r + 1} {key}: step {min(out['steps_s']):.3f} s", flush=True)
            ref = f"{a.settings[0][0]}:{a.settings[0][1]}"
            for key, t in times.items():
                row = {"model": model, "batch": batch, "size": a.size, "setting": key, **info[key],
                       "step_s": min(t["steps_s"]), "step_median_s": statistics.median(t["steps_s"]),
                       "all_steps_s": t["steps_s"],
                       "step_speedup": min(times[ref]["steps_s"]) / min(t["steps_s"])}
                if t["forward_s"]:
                    row.update(forward_s=min(t["forward_s"]), forward_median_s=statistics.median(t["forward_s"]),
                               all_forward_s=t["forward_s"],
                               forward_speedup=min(times[ref]["forward_s"]) / min(t["forward_s"]))
                record["rows"].append(row)
                fwd = (f", forward {row['forward_s']:.3f} s ({row['forward_speedup']:.2f}x)"
                       if "forward_s" in row else "")
                print(f"{model} b{batch} {key:18s} step {row['step_s']:.3f} s (median {row['step_median_s']:.3f}, "
                      f"{row['step_speedup']:.2f}x){fwd}", flush=True)
            if a.out:
                a.out.parent.mkdir(parents=True, exist_ok=True)
                write_json(a.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
