"""benchmarks/gpu_check.sh in its dry run (GPU_CHECK_DRY=1, CPU, tiny shapes): its steps, paths and the
layout of what it leaves in $OUT; and the pure parts of benchmarks/gpu_check.py (the mamba-ssm setup.py
patch, the goals).  Not a GPU test: it runs wherever the test suite runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.benchmarks import load_benchmark

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
CARRY = Path(os.environ.get("GPU_CHECK_CARRY", REPO / ".carry"))
gpu_check = load_benchmark("gpu_check")

STEPS = ["env", "mamba_build_start", "build", "pytest", "memcheck", "racecheck", "bench_scan", "train_step",
         "mamba_build", "bench_mamba", "train_step_mamba"]
#: The layout the device tool brings back (its README): 8 files, 16 MiB each, 64 MiB in all.
FILES = {"gpu_check.json", "steps.log", "mamba_build.log", "bench_scan.json", "bench_mamba.json", "train_step.json",
         "train_step_mamba.json", "train_metrics.json"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    if os.environ.get("GPU_CHECK_RUNNING"):
        pytest.skip("inside a gpu_check.sh run (its pytest step ignores this file; guard against recursion)")
    for tool in ("bash", "timeout", "setsid"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")
    out = tmp_path_factory.mktemp("gpu_check") / "out"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OUT": str(out), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    env.pop("GPU_CHECK_STEPS", None)
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, json.loads((out / "gpu_check.json").read_text()), proc.stdout


def test_dry_run_writes_what_the_device_tool_brings_back(dry_run):
    out, data, _ = dry_run
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    has_data = any(s["name"].startswith("train_run") and s["status"] != "skipped" for s in data["steps"])
    assert files == (FILES if has_data else FILES - {"train_metrics.json"}), files
    assert data["out_layout"]["ok"], data["out_layout"]["problems"]
    assert data["out_layout"]["files"] == sorted(files)


def test_dry_run_runs_every_step_in_order(dry_run):
    _, data, stdout = dry_run
    assert data["dry_run"] is True and "not a GPU result" in data["dry_run_note"]
    names = [s["name"] for s in data["steps"]]
    assert [n for n in names if n in STEPS] == STEPS, names
    for s in data["steps"]:
        assert s["status"] in ("ok", "dry", "stopped", "skipped"), s
        assert isinstance(s["seconds"], (int, float)) and s["seconds"] >= 0
    statuses = data["step_statuses"]
    # without the ExONE data (no shared/ beside the checkout) the training run is skipped, and says why
    no_data = statuses.get("train_run") == "skipped" and any(
        s["name"] == "train_run" and "no training data" in s.get("note", "") for s in data["steps"])
    assert statuses["env"] == "ok" and [n for n in data["steps_not_ok"] if not (no_data and n == "train_run")] == []
    for name in ("build", "pytest", "memcheck", "racecheck", "bench_scan", "train_step"):
        assert statuses[name] == "dry", (name, statuses[name])  # stand-ins or CPU runs, never "ok" in a dry run
    sdist = list(CARRY.glob("mamba_ssm-*.tar.gz"))
    start = next(s for s in data["steps"] if s["name"] == "mamba_build_start")
    assert start["status"] == "dry"  # a stand-in build in the background, with or without the sdist
    assert ("setup.py patched" if sdist else "the patch is not checked") in start["note"]
    assert data["steps"][names.index("pytest")]["pytest"]["failures"] == 0
    assert data["machine"]["python"] and data["machine"]["torch"]
    assert data["finished_utc"] and data["elapsed_s"] < data["budget_s"]
    assert "goal sanitizer_clean: met=None" in stdout


def test_dry_run_results(dry_run):
    _, data, _ = dry_run
    res = data["results"]
    scan = res["bench_scan"]
    assert scan["partial"] is False and scan["machine"]["device"] == "cpu"
    assert scan["machine"]["copy_bandwidth_GBps"] > 0
    assert {r["dtype"] for r in scan["rows"]} == {"float32", "bfloat16"}
    for r in scan["rows"]:
        for name in ("fused", "materialised", "ours_1d"):
            assert r[name]["fwd_s"] > 0 and r[name]["fwd_bwd_GBps"] > 0
        assert r["fused_fwd_fraction_of_copy_bw"] > 0
        assert ("fwd_s" in r["reference"]) == (r["dtype"] == "float32" and r["batch"] == 1)
    mamba = res["bench_mamba"]
    assert set(mamba["skipped_implementations"]) == {"mamba_path", "mamba_1d"}  # CUDA only
    assert {"fused", "ours_1d"} <= set(mamba["rows"][0])
    step = res["train_step"]
    assert {r["scan"] for r in step["rows"]} == {"fused", "materialised"}
    assert all(r["logits_max_abs_diff_vs_fused"] < 1e-3 for r in step["rows"])
    assert step["materialised_over_fused_step"]
    assert "mamba" in res["train_step_mamba"]["skipped"]
    goals = data["goals"]
    assert goals["fused_fwd_bwd_at_least_2x_mamba_path"]["met"] is None
    copy_goal = goals["fused_fwd_at_least_half_copy_bw_largest_stage"]
    assert copy_goal["values"] and "not the GPU goal" in copy_goal["note"]
    assert goals["sanitizer_clean"]["met"] is None


MAMBA_LIKE_SETUP = '''
from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
cc_flag = []
if True:
    cc_flag.append("-gencode")
    cc_flag.append("arch=compute_75,code=sm_75")
    if bare_metal_version >= Version("11.8"):
        cc_flag.append("-gencode")
        cc_flag.append("arch=compute_90,code=sm_90")
nvcc = ["-O3", "--use_fast_math"] + cc_flag
'''


def test_patch_mamba_setup_leaves_the_arch_to_torch():
    new, n = gpu_check.patch_mamba_setup(MAMBA_LIKE_SETUP)
    assert n == 4 and "arch=compute" not in new and "-gencode" not in new
    compile(new, "setup.py", "exec")  # the emptied if-blocks keep a statement
    assert "from setuptools.command.bdist_wheel import bdist_wheel" in new
    assert gpu_check.patch_mamba_setup(new)[1] == 0


def test_patch_mamba_setup_on_the_carried_sdist(tmp_path):
    sdist = sorted(CARRY.glob("mamba_ssm-*.tar.gz"))
    if not sdist:
        pytest.skip("no mamba-ssm sdist in .carry/ (benchmarks/gpu_check_prepare.sh)")
    import tarfile

    with tarfile.open(sdist[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/setup.py"))
        text = tar.extractfile(member).read().decode()
    new, n = gpu_check.patch_mamba_setup(text)
    assert n >= 2 and "arch=compute_" not in new
    compile(new, "setup.py", "exec")


def _row(c, side, batch, dtype="bfloat16", **extra):
    return {"channels": c, "height": side, "width": side, "batch": batch, "dtype": dtype, **extra}


def test_goals_are_judged_from_gpu_results():
    stages = [(192, 64), (384, 32), (768, 16), (1536, 8)]
    data = {"dry_run": False, "steps": [{"name": "memcheck", "status": "ok"}, {"name": "racecheck", "status": "failed"}],
            "results": {
                "bench_mamba": {"rows": [_row(c, s, b, mamba_path_over_fused_fwd_bwd=2.5 if c != 768 else 1.9)
                                         for c, s in stages for b in (1, 32)]},
                "bench_scan": {"machine": {"device": "cuda", "copy_bandwidth_GBps": 4000.0},
                               "rows": [_row(c, s, b, fused={"fwd_GBps": 2400.0}, fused_fwd_fraction_of_copy_bw=0.6)
                                        for c, s in stages for b in (1, 32)]}}}
    goals = gpu_check.judge_goals(data)
    mamba = goals["fused_fwd_bwd_at_least_2x_mamba_path"]
    assert mamba["met"] is False and mamba["min"] == 1.9 and mamba["stages_covered"] == 4 and mamba["note"] is None
    copy = goals["fused_fwd_at_least_half_copy_bw_largest_stage"]
    assert copy["met"] is True and copy["stage"] == "192x64x64" and [v["batch"] for v in copy["values"]] == [32]
    assert goals["sanitizer_clean"]["met"] is False
    data["steps"][1]["status"] = "ok"
    assert gpu_check.judge_goals(data)["sanitizer_clean"]["met"] is True
    data["steps"] = data["steps"][:1]  # racecheck never ran
    assert gpu_check.judge_goals(data)["sanitizer_clean"]["met"] is None


def test_out_layout_check(tmp_path):
    for i in range(9):
        (tmp_path / f"f{i}.json").write_text("{}")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "bad name.txt").write_text("x")
    got = gpu_check.check_layout(tmp_path)
    assert not got["ok"]
    assert any("11 files" in p for p in got["problems"])
    assert any("deeper" in p for p in got["problems"]) and any("bad name" in p for p in got["problems"])
