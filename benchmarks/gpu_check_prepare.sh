#!/usr/bin/env bash
# Fill .carry/ (git-ignored) with what benchmarks/gpu_check.sh needs on the device machine, which has no
# network, and check that the working tree plus .carry stays within the device tool's 64 MiB:
#
#   .carry/mamba_ssm-<version>.tar.gz        mamba-ssm's sdist (built there against the device's torch)
#   .carry/shared/fixtures/reference/        the authors' fixtures (tests/gpu/test_cuda_models.py)
#   .carry/shared/data/exone316l/            RG/, RGMask/, splits.json (the training run; not AG/)
#   .carry/commit.txt                        the commit (and whether the tree was dirty) at preparation
#
# Run from anywhere, on the development machine:  bash benchmarks/gpu_check_prepare.sh
# Knobs: MAMBA_VERSION (default 2.3.2.post1), GRAINSEG_SHARED (default ../shared), GPU_CHECK_NO_DATA=1
# (leave the 36 MB of training data out: the training run is then skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
MAMBA_VERSION=${MAMBA_VERSION:-2.3.2.post1}
SHARED=${GRAINSEG_SHARED:-../shared}
PY=${PYTHON:-python3}
LIMIT=$((64 * 1024 * 1024))
mkdir -p .carry

sdist=.carry/mamba_ssm-$MAMBA_VERSION.tar.gz
if [ ! -f "$sdist" ]; then
  rm -f .carry/mamba_ssm-*.tar.gz  # one version only: gpu_check.sh takes the first it finds
  # --no-build-isolation + MAMBA_SKIP_CUDA_BUILD: pip runs setup.py for the metadata, which imports torch
  MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation \
    -d .carry "mamba-ssm==$MAMBA_VERSION"
fi

if [ -d "$SHARED/fixtures/reference" ]; then
  mkdir -p .carry/shared/fixtures
  rm -rf .carry/shared/fixtures/reference
  cp -r "$SHARED/fixtures/reference" .carry/shared/fixtures/
else
  echo "gpu_check_prepare: $SHARED/fixtures/reference not found: the fixture tests will skip on the device"
fi

rm -rf .carry/shared/data
if [ "${GPU_CHECK_NO_DATA:-0}" != "1" ] && [ -f "$SHARED/data/exone316l/splits.json" ]; then
  mkdir -p .carry/shared/data/exone316l
  cp -r "$SHARED/data/exone316l/RG" "$SHARED/data/exone316l/RGMask" "$SHARED/data/exone316l/splits.json" \
    .carry/shared/data/exone316l/
  [ -f "$SHARED/data/exone316l/README.md" ] && cp "$SHARED/data/exone316l/README.md" .carry/shared/data/exone316l/
else
  echo "gpu_check_prepare: no training data carried: the training run will be skipped"
fi

{ git rev-parse HEAD; git status --porcelain --untracked-files=no | grep -q . && echo "(working tree dirty)"; } \
  >.carry/commit.txt 2>/dev/null || true

tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
carry=$(find .carry -type f -print0 | xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}')
total=$((tree + carry))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "gpu_check_prepare: working tree $(mib "$tree") + .carry $(mib "$carry") = $(mib "$total") of 64 MiB"
du -sh .carry/* .carry/shared/* 2>/dev/null || true
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_check_prepare: over the device tool's 64 MiB: set GPU_CHECK_NO_DATA=1 or carry less" >&2
  exit 1
fi
