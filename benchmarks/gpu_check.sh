#!/usr/bin/env bash
# GPU bring-up in one call (issue 18): build grainseg's CUDA kernels for sm_90, run the GPU tests and
# compute-sanitizer, benchmark the scan against the materialised path, our 1-D op, the reference and
# mamba-ssm, time the VM-UNet-ASPP training step, and train for whatever time is left; all within
# GPU_CHECK_BUDGET_S seconds (default 520, under the 9 minutes the issue allows).
#
#   bash benchmarks/gpu_check.sh                   # on the device machine, from a copy of the repo
#   GPU_CHECK_DRY=1 OUT=/tmp/x bash benchmarks/gpu_check.sh   # dry run on a CPU machine (seconds)
#
# Everything goes to $OUT (./gpu_out when unset), at most 8 files (what the device tool brings back):
#   gpu_check.json      steps (status, exit code, seconds, limit, log tail), machine, results, goals
#   steps.log           the output of every foreground step, in order, each under a '====' header
#   mamba_build.log     the background mamba-ssm build
#   bench_scan.json     bench_scan.py: fused vs materialised vs our 1-D op vs reference (+ GB/s)
#   bench_mamba.json    bench_scan.py: fused vs mamba-ssm's path and kernel (when mamba-ssm built)
#   train_step.json, train_step_mamba.json   bench_train_step.py (ours; ours vs mamba-ssm)
#   train_metrics.json  metrics.json of the training run (its checkpoints stay on the machine: > 16 MiB)
# A failed step does not stop the next ones; each runs under `timeout`, cut to the time left.
#
# Needs (see docs/cuda.md): .carry/ from benchmarks/gpu_check_prepare.sh, named in the device tool's
# `carry`: mamba-ssm's sdist, the fixtures and the training data (GRAINSEG_SHARED=.carry/shared).
#
# Knobs: GPU_CHECK_BUDGET_S (total seconds), GPU_CHECK_STEPS (comma list: run only these steps; `build`
# is needed on a fresh machine), GPU_CHECK_MAMBA_RESERVE_S (seconds kept for the mamba-ssm steps when
# waiting for its build, default 110), GPU_CHECK_COMMIT (the commit, when the copy has no .git),
# GPU_CHECK_CARRY (default .carry), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
DRY=${GPU_CHECK_DRY:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-520}
MAMBA_RESERVE=${GPU_CHECK_MAMBA_RESERVE_S:-110}
PY=${PYTHON:-python3}
OUT=${OUT:-$REPO/gpu_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
CARRY=${GPU_CHECK_CARRY:-$REPO/.carry}  # what travels in the device call's `carry`
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
H="$PY $REPO/benchmarks/gpu_check.py"
STEPS_LOG=$OUT/steps.log
T0=$(date +%s)
END=$((T0 + BUDGET))
RESERVE=12  # seconds kept for the final JSON and the clean-up
MAMBA_PID="" TRAIN_PID="" MAMBA_T0=0 TRAIN_T0=0 TRAIN_STOPPED=0

export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 GPU_CHECK_RUNNING=1
[ -d "$CARRY/shared" ] && export GRAINSEG_SHARED=${GRAINSEG_SHARED:-$CARRY/shared}
DATA=${GRAINSEG_SHARED:-$REPO/../shared}/data/exone316l
if [ "$DRY" = 1 ]; then
  DEV=cpu
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  DEV=cuda
  export PIP_NO_INDEX=1  # no network there: never wait for an index
fi
: >"$STEPS_LOG"
$H init "$OUT" --dry "$DRY" --budget "$BUDGET" || exit 1

now() { date +%s; }
left() { echo $((END - $(now))); }
want() { [ -z "${GPU_CHECK_STEPS:-}" ] || [[ ",$GPU_CHECK_STEPS," == *",$1,"* ]]; }
log() { echo "$*" | tee -a "$STEPS_LOG"; }

# record NAME STATUS RC SECONDS LIMIT NOTE [LOGFILE] [extra args for gpu_check.py step]
record() {
  local name=$1 status=$2 rc=$3 secs=$4 limit=$5 note=$6 logf=$7
  shift 7
  local opt=()
  [ -n "$rc" ] && opt+=(--rc "$rc")
  [ -n "$logf" ] && opt+=(--log "$logf")
  $H step "$OUT" --name "$name" --status "$status" --seconds "$secs" --timeout "$limit" --note "$note" \
    "${opt[@]}" "$@" | tee -a "$STEPS_LOG"
}

# run_step NAME MAX_S KIND NOTE CMD [extra record args]: CMD under `timeout` (MAX_S, cut to the time
# left), output to steps.log; KIND real or dry (a dry-run stand-in: status 'dry' when it exits 0).
run_step() {
  local name=$1 max=$2 kind=$3 note=$4 cmd=$5
  shift 5
  if ! want "$name"; then
    record "$name" skipped 0 0 0 "not in GPU_CHECK_STEPS" ""
    return 0
  fi
  local avail=$(($(left) - RESERVE))
  if [ "$avail" -lt 10 ]; then
    record "$name" skipped 0 0 0 "out of time (${avail} s left of the budget)" ""
    return 1
  fi
  local limit=$((max < avail ? max : avail))
  log "==== $(date -u +%FT%TZ) step $name (limit ${limit} s): $cmd"
  local t0 rc status
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" bash -c "$cmd" 2>&1 | tee "$WORK/$name.log" >>"$STEPS_LOG"
  rc=${PIPESTATUS[0]}
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
  case $rc in
    0) status=ok; [ "$kind" = dry ] && status=dry ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  record "$name" "$status" "$rc" "$secs" "$limit" "$note" "$WORK/$name.log" --cmd "$cmd" "$@"
  return "$rc"
}

running() {  # running PID NAME: the background job NAME has written no exit code and its process is there
  [ ! -f "$WORK/$2.rc" ] && kill -0 "$1" 2>/dev/null
}

kill_group() {  # kill_group PID: the process group a `setsid` child leads
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM -- "-$1" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL -- "-$1" 2>/dev/null
  return 0
}

finish() {
  trap - EXIT INT TERM
  kill_group "$TRAIN_PID"
  if [ -n "$MAMBA_PID" ] && kill -0 "$MAMBA_PID" 2>/dev/null; then
    kill_group "$MAMBA_PID"
    record mamba_build_stopped stopped "" $(($(now) - MAMBA_T0)) 0 "the mamba-ssm build was still running at the end: stopped" ""
  fi
  [ -f "$WORK/train_run/metrics.json" ] && cp "$WORK/train_run/metrics.json" "$OUT/train_metrics.json"
  $H finish "$OUT" --elapsed $(($(now) - T0)) | tee -a "$STEPS_LOG"
  rm -rf "$WORK"
}
trap finish EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------ steps

run_step env 60 real "machine, GPU, tool and package versions" \
  "$H env '$OUT' && (nvidia-smi || echo 'nvidia-smi: not available'); nproc; free -g 2>/dev/null | head -2; df -h '$REPO' | tail -1"

# 1. mamba-ssm: extract the carried sdist, patch its hard-coded arch list, build it in the background.
mamba_start() {
  local sdist src="" patched="" build note
  sdist=$(ls "$CARRY"/mamba_ssm-*.tar.gz 2>/dev/null | head -1)
  : >"$WORK/mamba_patch.log"
  if [ -n "$sdist" ]; then
    mkdir -p "$WORK/mamba_src"
    if ! tar xzf "$sdist" -C "$WORK/mamba_src" 2>>"$WORK/mamba_patch.log"; then
      record mamba_build_start failed 1 0 0 "cannot extract $sdist" "$WORK/mamba_patch.log"
      return
    fi
    src=$(ls -d "$WORK"/mamba_src/mamba_ssm-*/ | head -1)
    if ! TORCH_CUDA_ARCH_LIST=9.0 $H patch-mamba "$src/setup.py" >>"$WORK/mamba_patch.log" 2>&1; then
      record mamba_build_start failed 1 0 0 "patching setup.py failed" "$WORK/mamba_patch.log"
      return
    fi
    patched="sdist $(basename "$sdist") extracted and its setup.py patched (arch from TORCH_CUDA_ARCH_LIST=9.0, not its own nine archs)"
  elif [ "$DRY" != 1 ]; then
    record mamba_build_start skipped 0 0 0 "no mamba-ssm sdist in .carry/ (run benchmarks/gpu_check_prepare.sh)" ""
    return
  else
    patched="no mamba-ssm sdist in .carry/: the patch is not checked"
  fi
  build="cd '$src' && MAMBA_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=12 $PY -m pip install -v --no-build-isolation --no-deps --no-index ."
  note="$patched; building in the background"
  if [ "$DRY" = 1 ]; then
    note="dry run: $patched; the build needs a CUDA torch: a stand-in runs instead of: $build"
    build="echo 'dry run: mamba-ssm build not run'; sleep 1"
  fi
  cat "$WORK/mamba_patch.log" >>"$STEPS_LOG"
  MAMBA_T0=$(now)
  setsid bash -c "$build; echo \$? >'$WORK/mamba_build.rc'" >"$OUT/mamba_build.log" 2>&1 </dev/null &
  MAMBA_PID=$!
  record mamba_build_start "$([ "$DRY" = 1 ] && echo dry || echo ok)" 0 0 0 "$note (pid $MAMBA_PID)" \
    "$WORK/mamba_patch.log" --cmd "$build"
}
if want mamba_build; then mamba_start; else record mamba_build_start skipped 0 0 0 "not in GPU_CHECK_STEPS" ""; fi

# 2. grainseg with its CUDA kernels, sm_90 only, 4 jobs beside mamba-ssm's 12.
if [ "$DRY" = 1 ]; then
  run_step build 300 dry "dry run: not rebuilt (the CUDA build needs a CUDA torch); checks the installed extension" \
    "$PY -c 'import grainseg.ops as o; print(\"installed grainseg._C: backend on cpu:\", o.backend(\"cpu\"), \"| CUDA kernels:\", o.extension_has_cuda())'"
else
  run_step build 300 real "pip install -e . with TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=4; then: CUDA kernels present; cuobjdump lists the binary's cubins (sm_90 only)" \
    "MAX_JOBS=4 TORCH_CUDA_ARCH_LIST=9.0 $PY -m pip install -v --no-build-isolation --no-deps --no-index -e . && $PY -c 'import grainseg.ops as o; assert o.extension_has_cuda(), \"no CUDA kernels in grainseg._C\"; print(\"grainseg._C: CUDA kernels, backend\", o.backend(\"cuda\"))' && (cuobjdump --list-elf grainseg/_C*.so || true)"
fi

# 3. the GPU tests (on a CPU machine they skip), then compute-sanitizer on one small case.
PYTEST_KIND=real
[ "$DRY" = 1 ] && PYTEST_KIND=dry
run_step pytest 180 $PYTEST_KIND "pytest tests/gpu -x (the sanitizer test is the next two steps; on CPU every GPU test skips)" \
  "$PY -m pytest tests/gpu -x -q -rs -p no:cacheprovider --ignore=tests/gpu/test_cuda_sanitizer.py --ignore=tests/gpu/test_gpu_check_dry.py --junitxml='$WORK/pytest.xml'" \
  --junit "$WORK/pytest.xml"

SAN=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
for tool in memcheck racecheck; do
  if [ "$tool" = memcheck ]; then flags="--leak-check no"; summary="ERROR SUMMARY: 0 errors"
  else flags=""; summary="RACECHECK SUMMARY: 0 hazards"; fi
  # no caching allocator: every tensor its own cudaMalloc, so memcheck sees an access past its end
  cmd="PYTORCH_NO_CUDA_MEMORY_CACHING=1 '$SAN' --tool $tool $flags --error-exitcode 99 $PY tests/gpu/sanitizer_case.py --small >'$WORK/$tool.out' 2>&1; rc=\$?; cat '$WORK/$tool.out'; [ \$rc -eq 0 ] && grep -q 'sanitizer case done' '$WORK/$tool.out' && grep -q '$summary' '$WORK/$tool.out'"
  if [ "$DRY" = 1 ]; then
    run_step "$tool" 90 dry "dry run: needs a GPU; would run: $cmd" \
      "if [ -x '$SAN' ]; then echo 'compute-sanitizer: $SAN'; else echo 'compute-sanitizer not found here ($SAN)'; fi; $PY -c 'import ast; ast.parse(open(\"tests/gpu/sanitizer_case.py\").read())'"
  else
    run_step "$tool" 90 real "compute-sanitizer --tool $tool on tests/gpu/sanitizer_case.py --small; clean = exit 0 and '$summary'" "$cmd"
  fi
done

# 4. the scan benchmark: ours (the mamba-ssm comparison comes once its build is done).
if [ "$DRY" = 1 ]; then
  BENCH_ARGS="--device cpu --threads 1 --stages 8x4 --batches 1,2 --reps 2 --warmup 1 --ref-timeout 30 --ref-max-batch 1 --bandwidth --copy-mib 16 --no-memory"
  STEP_ARGS="--device cpu --model vmunet_aspp_small --size 32 --batches 1 --amp off --steps 1 --warmup 1"
  KIND=dry NOTE="dry run: CPU at tiny shapes"
else
  BENCH_ARGS="--device cuda --batches 1,32 --reps 20 --warmup 3 --ref-max-batch 1"
  STEP_ARGS="--device cuda --model vmunet_aspp --size 256 --batches 1,8 --amp off,fp16 --steps 10 --warmup 3"
  KIND=real NOTE="VM-UNet-ASPP stage shapes"
fi
run_step bench_scan 150 $KIND "$NOTE: fused, materialised, our 1-D op, reference; fp32 and bf16" \
  "$PY benchmarks/bench_scan.py $BENCH_ARGS --dtypes fp32,bf16 --impls fused,materialised,ours_1d,reference --out '$OUT/bench_scan.json'"

# 5. the training step with our op.
run_step train_step 90 $KIND "$NOTE: training step, fused scan and materialised copies + our 1-D op" \
  "$PY benchmarks/bench_train_step.py $STEP_ARGS --scans fused,materialised --out '$OUT/train_step.json'"

# 6. the training run in the background while the mamba-ssm build finishes (the GPU is idle then).
TRAIN_ARGS="--model vmunet_aspp --data '$DATA' --split paper --epochs 20 --batch-size 1 --lr 1e-4 --loss bce --patience 4 --checkpoint-every 200 --device $DEV --no-progress --out '$WORK/train_run'"
if [ "$DRY" = 1 ]; then
  mkdir -p "$WORK/train_run"
  $H splits "$DATA" "$WORK/tiny_splits.json" 2>/dev/null
  TRAIN_ARGS="--model vmunet_aspp_small --data '$DATA' --splits-file '$WORK/tiny_splits.json' --split paper --epochs 1 --batch-size 1 --input-size 32 --device cpu --no-progress --out '$WORK/train_run'"
fi
TRAIN_CMD="$PY -m grainseg train $TRAIN_ARGS"
train_start() {
  if ! want train_run; then record train_run skipped 0 0 0 "not in GPU_CHECK_STEPS" ""; return; fi
  if [ ! -f "$DATA/splits.json" ]; then record train_run skipped 0 0 0 "no training data at $DATA (carry it: gpu_check_prepare.sh)" ""; return; fi
  if [ $(($(left) - RESERVE)) -lt 60 ]; then record train_run skipped 0 0 0 "out of time" ""; return; fi
  log "==== $(date -u +%FT%TZ) step train_run (background): $TRAIN_CMD"
  TRAIN_T0=$(now)
  setsid bash -c "$TRAIN_CMD; echo \$? >'$WORK/train_run.rc'" >"$WORK/train_run.log" 2>&1 </dev/null &
  TRAIN_PID=$!
}
train_stop() {  # train_stop WHY
  [ -n "$TRAIN_PID" ] || return 0
  kill_group "$TRAIN_PID"
  local rc status=stopped
  rc=$(cat "$WORK/train_run.rc" 2>/dev/null || echo "")
  if [ "$rc" = 0 ]; then status=ok; [ "$DRY" = 1 ] && status=dry
  elif [ -n "$rc" ]; then status=failed
  else TRAIN_STOPPED=1; fi
  [ -f "$WORK/train_run/metrics.json" ] && cp "$WORK/train_run/metrics.json" "$OUT/train_metrics.json"
  { echo "---- train_run log:"; cat "$WORK/train_run.log"; } >>"$STEPS_LOG"
  record "${2:-train_run}" "$status" "${rc:-}" $(($(now) - TRAIN_T0)) 0 "$1; paper protocol ($TRAIN_CMD)" "$WORK/train_run.log" --cmd "$TRAIN_CMD"
  TRAIN_PID=""
}
train_start

# 7. wait for mamba-ssm (keeping MAMBA_RESERVE seconds for its steps), then compare with it.
MAMBA_OK=0
if [ -n "$MAMBA_PID" ]; then
  log "==== $(date -u +%FT%TZ) waiting for the mamba-ssm build (at most until $((MAMBA_RESERVE + RESERVE)) s before the end)"
  while running "$MAMBA_PID" mamba_build && [ "$(left)" -gt $((MAMBA_RESERVE + RESERVE)) ]; do
    sleep 2
    [ -n "$TRAIN_PID" ] && ! running "$TRAIN_PID" train_run && train_stop "finished while waiting for mamba-ssm"
  done
  rc=$(cat "$WORK/mamba_build.rc" 2>/dev/null || echo "")
  if [ "$rc" = 0 ]; then
    MAMBA_OK=1
    record mamba_build "$([ "$DRY" = 1 ] && echo dry || echo ok)" 0 $(($(now) - MAMBA_T0)) 0 "background build finished" "$OUT/mamba_build.log"
  elif [ -n "$rc" ]; then
    record mamba_build failed "$rc" $(($(now) - MAMBA_T0)) 0 "background build failed (mamba_build.log)" "$OUT/mamba_build.log"
  else
    kill_group "$MAMBA_PID"
    record mamba_build timeout "" $(($(now) - MAMBA_T0)) 0 "not finished $((MAMBA_RESERVE + RESERVE)) s before the end: stopped; mamba-ssm steps skipped" "$OUT/mamba_build.log"
  fi
  MAMBA_PID=""
else
  record mamba_build skipped 0 0 0 "not started" ""
fi
if [ "$MAMBA_OK" = 1 ]; then
  train_stop "stopped for the mamba-ssm benchmarks (the GPU to themselves)"
  run_step bench_mamba 90 $KIND "$NOTE: fused vs our 1-D op vs mamba-ssm's path (cross-scan + selective_scan_fn + merge) and kernel" \
    "$PY benchmarks/bench_scan.py $BENCH_ARGS --dtypes fp32,bf16 --impls fused,ours_1d,mamba_path,mamba_1d --out '$OUT/bench_mamba.json'"
  run_step train_step_mamba 60 $KIND "$NOTE: training step, fused scan vs mamba-ssm's path" \
    "$PY benchmarks/bench_train_step.py $STEP_ARGS --scans fused,mamba --out '$OUT/train_step_mamba.json'"
else
  record bench_mamba skipped 0 0 0 "mamba-ssm not built" ""
  record train_step_mamba skipped 0 0 0 "mamba-ssm not built" ""
fi

# 8. training: let it run to the end of the budget, or resume it (from its last checkpoint) if it was
# stopped for the mamba-ssm steps.
if [ -n "$TRAIN_PID" ]; then
  while running "$TRAIN_PID" train_run && [ "$(left)" -gt "$RESERVE" ]; do sleep 2; done
  train_stop "ran until the end of the budget or finished"
elif [ "$TRAIN_STOPPED" = 1 ]; then
  RESUME=""
  [ -f "$WORK/train_run/checkpoint.pt" ] && RESUME="--resume"
  [ -z "$RESUME" ] && rm -rf "$WORK/train_run"
  rm -f "$WORK/train_run.rc"
  TRAIN_CMD="$TRAIN_CMD $RESUME"
  train_start
  if [ -n "$TRAIN_PID" ]; then
    while running "$TRAIN_PID" train_run && [ "$(left)" -gt "$RESERVE" ]; do sleep 2; done
    train_stop "continued after the mamba-ssm steps until the end of the budget or finished" train_run_resumed
  fi
fi
exit 0
