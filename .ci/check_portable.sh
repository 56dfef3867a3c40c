#!/usr/bin/env bash
# Build grainseg._C for a portable target (GRAINSEG_MARCH, default x86-64-v3: AVX2 + FMA, no AVX-512)
# in a scratch copy of the checkout and run the kernel tests against it (run by .ci/run).
#
# The native build on an AVX-512 machine runs the AVX-512 step core (csrc/cpu/scan_simd.h) for fp32 at
# n = 16, 32, 64; machines without AVX-512 run the AVX2 core (n = 8, 16) and the generic `omp simd` core
# for the rest.  This check keeps those paths built and tested here too.  The installed package is left
# untouched: the scratch copy is imported through PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MARCH=${GRAINSEG_PORTABLE_MARCH:-x86-64-v3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the sources only (no build outputs, no compiled extension of the installed build)
tar --exclude=./build --exclude=./.git --exclude='*.so' --exclude='__pycache__' --exclude=.pytest_cache \
    -cf - . | tar -xf - -C "$tmp"
echo "check_portable: building grainseg._C with -march=$MARCH"
(cd "$tmp" && GRAINSEG_MARCH="$MARCH" $PY setup.py -q build_ext --inplace > build.log 2>&1) ||
  { tail -n 40 "$tmp/build.log"; echo "check_portable: build failed"; exit 1; }
if objdump -d "$tmp"/grainseg/_C*.so | grep -q zmm; then
  echo "check_portable: the -march=$MARCH build contains AVX-512 code"; exit 1
fi
(cd "$tmp" && PYTHONPATH="$tmp" $PY - <<'PY'
import grainseg, grainseg.ops as ops
assert grainseg.__file__.startswith(__import__("os").getcwd()), grainseg.__file__
assert ops.backend("cpu") == "cpu", "the portable grainseg._C did not load"
print(f"check_portable: testing {grainseg.__file__}")
PY
)
(cd "$tmp" && PYTHONPATH="$tmp" $PY -m pytest -q -p no:cacheprovider tests/ops)
