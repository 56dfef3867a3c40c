#!/usr/bin/env bash
# Compile-check grainseg's CUDA sources without a GPU (run by .ci/run).
#
#  1. every csrc/**/*.cu and *.cuh must be free of torch headers (they build with plain nvcc);
#  2. every csrc/**/*.cu is compiled with `nvcc -c` for each architecture in GRAINSEG_CUDA_ARCHS
#     (default "80 90"), with setup.py's nvcc flags;
#  3. every csrc/**/*_cuda.cpp (the torch binding) is syntax-checked with g++ against the installed
#     torch's headers, when torch and the CUDA runtime headers are there (a stub stands in for
#     c10/cuda/impl/cuda_cmake_macros.h, which CPU wheels of torch lack);
#  4. tests/gpu/test_cuda_emulation.py runs the kernels' source on CPU under the host emulation
#     (marked slow in the normal test run because its first build takes about a minute); set
#     GRAINSEG_CHECK_CUDA_EMULATION=0 to leave it out.
# Skips with a message when nvcc is absent; exits non-zero on any error.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -z "$NVCC" ]; then
  echo "check_cuda: nvcc not found: CUDA compile check skipped"
  exit 0
fi
ARCHS=${GRAINSEG_CUDA_ARCHS:-"80 90"}
NVCC_FLAGS=(-O3 --use_fast_math -std=c++17 --expt-relaxed-constexpr -lineinfo -Icsrc)
echo "check_cuda: $("$NVCC" --version | tail -n 1), architectures: $ARCHS"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

mapfile -t cuda_sources < <(find csrc -name '*.cu' -o -name '*.cuh' | sort)
mapfile -t cu_files < <(find csrc -name '*.cu' | sort)
if [ ${#cu_files[@]} -eq 0 ]; then
  echo "check_cuda: no .cu files under csrc/"
  exit 0
fi

for f in "${cuda_sources[@]}"; do
  if grep -nE '^\s*#\s*include\s*[<"](torch|ATen|c10)/' "$f"; then
    echo "FAIL  $f includes a torch header (the .cu/.cuh files must build with plain nvcc)"
    failed=1
  fi
done

for f in "${cu_files[@]}"; do
  for arch in $ARCHS; do
    start=$SECONDS
    if "$NVCC" -c "${NVCC_FLAGS[@]}" -arch="sm_$arch" "$f" -o "$tmp/check.o" 2>"$tmp/log"; then
      echo "ok    nvcc -c sm_$arch  $f  ($((SECONDS - start)) s)"
      grep -i "warning" "$tmp/log" || true
    else
      echo "FAIL  nvcc -c sm_$arch  $f"
      cat "$tmp/log"
      failed=1
    fi
  done
done

mapfile -t bindings < <(find csrc -name '*_cuda.cpp' | sort)
PY=${PYTHON:-python3}
TORCH_INC=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'include'))" 2>/dev/null || true)
CUDA_INC=$(dirname "$(dirname "$(readlink -f "$NVCC")")")/include
[ -f "$CUDA_INC/cuda_runtime_api.h" ] || CUDA_INC=/usr/local/cuda/include
CXX_BIN=${CXX:-g++}
if [ ${#bindings[@]} -gt 0 ] && [ -n "$TORCH_INC" ] && [ -f "$CUDA_INC/cuda_runtime_api.h" ] && command -v "$CXX_BIN" >/dev/null; then
  mkdir -p "$tmp/stub/c10/cuda/impl"
  echo '#pragma once' >"$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
  for f in "${bindings[@]}"; do
    if "$CXX_BIN" -std=c++17 -fsyntax-only -Wall -Wextra -Wmissing-declarations -DGRAINSEG_WITH_CUDA -Icsrc \
      -isystem "$TORCH_INC" -isystem "$TORCH_INC/torch/csrc/api/include" -isystem "$CUDA_INC" \
      -idirafter "$tmp/stub" "$f" 2>"$tmp/log"; then
      echo "ok    $CXX_BIN -fsyntax-only  $f"
      cat "$tmp/log"
    else
      echo "FAIL  $CXX_BIN -fsyntax-only  $f"
      cat "$tmp/log"
      failed=1
    fi
  done
else
  echo "check_cuda: torch headers, CUDA headers or a C++ compiler missing: binding syntax check skipped"
fi

if [ "${GRAINSEG_CHECK_CUDA_EMULATION:-1}" != "0" ] && [ -n "$TORCH_INC" ] && [ -f "$CUDA_INC/cuda_fp16.h" ]; then
  echo "check_cuda: emulated kernel tests (tests/gpu/test_cuda_emulation.py)"
  if ! CUDA_HOME=$(dirname "$CUDA_INC") GRAINSEG_SLOW=1 "$PY" -m pytest -q -p no:cacheprovider tests/gpu/test_cuda_emulation.py; then
    echo "FAIL  emulated kernel tests"
    failed=1
  fi
else
  echo "check_cuda: emulated kernel tests skipped"
fi

if [ "$failed" -ne 0 ]; then
  echo "check_cuda: FAILED"
  exit 1
fi
echo "check_cuda: all CUDA sources compile"
