#!/usr/bin/env bash
# Portability of grainseg._C (run by .ci/run): build the extension with the default flags - the runtime
# dispatch build, csrc/cpu/scan_cpu_variant.cpp compiled for avx512 (-march=x86-64-v4), avx2
# (-march=x86-64-v3) and baseline x86-64, everything else without -march - in a scratch copy of the
# checkout, then
#   1. check the machine code: no AVX (ymm / zmm registers) in the common objects or the baseline variant,
#      no AVX-512 (zmm) in the avx2 variant;
#   2. run the kernel tests with each variant this CPU supports forced by GRAINSEG_CPU_CAPABILITY
#      (tests/ops/test_cpu_dispatch.py also runs every variant in-process);
#   3. when qemu-x86_64 (Debian: apt-get install qemu-user) is installed, run .ci/emulated_cpu_check.py on
#      emulated CPUs without AVX-512: Nehalem (x86-64-v2, no AVX) must pick baseline, Haswell avx2, and
#      both must match the reference.  GRAINSEG_CHECK_EMULATED=1 makes a missing qemu an error, 0 skips.
# The installed package is left untouched: the scratch copy is imported through PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EMULATED=${GRAINSEG_CHECK_EMULATED:-auto}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the sources only (no build outputs, no compiled extension of the installed build)
tar --exclude=./build --exclude=./.git --exclude='*.so' --exclude='__pycache__' --exclude=.pytest_cache \
    -cf - . | tar -xf - -C "$tmp"
echo "check_portable: building grainseg._C with the default flags (runtime ISA dispatch)"
start=$(date +%s)
(cd "$tmp" && env -u GRAINSEG_MARCH $PY setup.py -q build_ext --inplace > build.log 2>&1) ||
  { tail -n 40 "$tmp/build.log"; echo "check_portable: build failed"; exit 1; }
echo "check_portable: built in $(( $(date +%s) - start )) s"

objs=$(find "$tmp/build" -name '*.o' ! -path '*/isa/*')
isa=$(find "$tmp/build" -path '*/isa/*' -name 'scan_cpu_*.isa.o')
# (through a file: grep -q stops reading early, and under pipefail objdump's SIGPIPE would fail the pipe)
has() { objdump -d "$@" > "$tmp/disassembly.txt" && grep -Eq "$regs" "$tmp/disassembly.txt"; }
regs='%[yz]mm'
for o in $objs $(printf '%s\n' $isa | grep baseline); do
  if has "$o"; then echo "check_portable: $o (common or baseline code) contains AVX instructions"; exit 1; fi
done
regs='%zmm'
if has $(printf '%s\n' $isa | grep avx2); then echo "check_portable: the avx2 variant contains AVX-512 code"; exit 1; fi
if ! has $(printf '%s\n' $isa | grep avx512); then echo "check_portable: the avx512 variant has no AVX-512 code"; exit 1; fi
echo "check_portable: machine code checked ($(echo $objs | wc -w) common objects, $(echo $isa | wc -w) variants)"

variants=$(cd "$tmp" && PYTHONPATH="$tmp" $PY - <<'PY'
import os, grainseg, grainseg.ops as ops
assert grainseg.__file__.startswith(os.getcwd()), grainseg.__file__
assert ops.backend("cpu") == "cpu", "the dispatch build of grainseg._C did not load"
C = ops.extension()
assert list(C.compiled_cpu_capabilities()) == ["avx512", "avx2", "baseline"], C.compiled_cpu_capabilities()
print(" ".join(ops.cpu_capabilities()))
PY
)
echo "check_portable: this CPU runs: $variants"
for v in $variants; do
  echo "check_portable: kernel tests with GRAINSEG_CPU_CAPABILITY=$v"
  (cd "$tmp" && GRAINSEG_CPU_CAPABILITY=$v PYTHONPATH="$tmp" $PY -m pytest -q -p no:cacheprovider \
      tests/ops/test_scan_kernels.py tests/ops/test_scan_integration.py)
done
(cd "$tmp" && PYTHONPATH="$tmp" $PY -m pytest -q -p no:cacheprovider tests/ops/test_cpu_dispatch.py)

if [ "$EMULATED" != 0 ]; then
  if command -v qemu-x86_64 > /dev/null; then
    pyexe=$($PY -c "import sys; print(sys.executable)")
    for cpu_variant in Nehalem:baseline Haswell:avx2; do
      cpu=${cpu_variant%%:*}
      echo "check_portable: emulated $cpu (qemu-x86_64 -cpu $cpu), expecting ${cpu_variant#*:}"
      # One thread: under qemu-user a two-thread run of this check died with SIGILL in 1 of 6 tries on
      # Nehalem (2026-12-07; 0 of 8 with one thread; cause not pinned down, the kernels' function table is
      # process-wide). The native runs above test the baseline variant with threads.
      (cd "$tmp" && OMP_NUM_THREADS=1 GRAINSEG_EMULATED_CPU=$cpu PYTHONPATH="$tmp" qemu-x86_64 -cpu "$cpu" "$pyexe" -u \
          .ci/emulated_cpu_check.py "${cpu_variant#*:}" 2>&1 | grep -v "TCG doesn't support requested feature")
    done
  elif [ "$EMULATED" = 1 ]; then
    echo "check_portable: qemu-x86_64 not found (apt-get install qemu-user)"; exit 1
  else
    echo "check_portable: qemu-x86_64 not found: emulated-CPU check skipped (apt-get install qemu-user)"
  fi
fi
echo "check_portable: OK"
