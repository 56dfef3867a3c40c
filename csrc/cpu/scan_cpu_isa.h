// Runtime ISA dispatch of the CPU scan kernels.
//
// scan_cpu_variant.cpp (the kernels: scan_cpu_kernel.h, scan_simd.h, scan_math.h) is compiled once per
// variant, with that variant's flags and -DGRAINSEG_ISA=<name>:
//   avx512    -march=x86-64-v4 (AVX-512 F/BW/CD/DQ/VL + AVX2, FMA, F16C, BMI): the AVX-512 step core
//   avx2      -march=x86-64-v3 (AVX2, FMA, F16C, BMI): the AVX2 step core
//   baseline  no -march (x86-64: SSE2): the generic core only
// Each copy exports one C function, grainseg_scan_kernels_<name>(), returning its table of entry points;
// setup.py partially links every copy and makes all its other symbols local (`ld -r
// --force-group-allocation`, `objcopy --keep-global-symbol`), so inline functions and template
// instantiations the copies share by name (std::, c10::) cannot be merged across variants by the linker.
// scan_cpu.cpp (compiled with the common, baseline flags) picks a table at first use from cpuid, or
// from GRAINSEG_CPU_CAPABILITY.  A build with GRAINSEG_MARCH=<arch> compiles everything once with
// -march=<arch> and -DGRAINSEG_ISA=native: one table, "native".
#pragma once

#include <string>
#include <vector>

#include "scan_params.h"

namespace grainseg {
namespace cpu {

// Input types of the tables, in this order: float, double, c10::Half, c10::BFloat16.
constexpr int kNumScanDtypes = 4;

struct ScanKernels {
  const char* name;
  void (*fwd[kNumScanDtypes])(const ScanParams&);
  void (*bwd[kNumScanDtypes])(const ScanBwdParams&);
};

// The variant in use (chosen on the first call: GRAINSEG_CPU_CAPABILITY, else the best this CPU runs).
// Throws std::invalid_argument for an unknown GRAINSEG_CPU_CAPABILITY and std::runtime_error for a
// variant this CPU or this build lacks.
const ScanKernels& active_kernels();
std::string cpu_capability();
// Switches the variant for the rest of the process (tests and benchmarks); same errors.
void set_cpu_capability(const std::string& name);
// Variants compiled into this build, best first, and those of them this CPU can run.
std::vector<std::string> compiled_cpu_capabilities();
std::vector<std::string> supported_cpu_capabilities();

}  // namespace cpu
}  // namespace grainseg
