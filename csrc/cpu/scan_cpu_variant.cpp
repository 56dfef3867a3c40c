// One variant of the CPU scan kernels: compiled once per ISA with -DGRAINSEG_ISA=<name> and that ISA's
// flags (setup.py; see scan_cpu_isa.h), exporting only grainseg_scan_kernels_<name>().
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#ifndef GRAINSEG_ISA
#error "compile with -DGRAINSEG_ISA=<variant name> (setup.py does)"
#endif
#define GRAINSEG_CAT_(a, b) a##b
#define GRAINSEG_CAT(a, b) GRAINSEG_CAT_(a, b)
#define GRAINSEG_STR_(a) #a
#define GRAINSEG_STR(a) GRAINSEG_STR_(a)
#define GRAINSEG_KERNEL_NS GRAINSEG_CAT(isa_, GRAINSEG_ISA)

#include "cpu/scan_cpu_isa.h"
#include "cpu/scan_cpu_kernel.h"

namespace {
namespace k = grainseg::cpu::GRAINSEG_KERNEL_NS;
const grainseg::cpu::ScanKernels kKernels = {
    GRAINSEG_STR(GRAINSEG_ISA),
    {&k::scan_fwd_cpu<float, float>, &k::scan_fwd_cpu<double, double>, &k::scan_fwd_cpu<c10::Half, float>,
     &k::scan_fwd_cpu<c10::BFloat16, float>},
    {&k::scan_bwd_cpu<float, float>, &k::scan_bwd_cpu<double, double>, &k::scan_bwd_cpu<c10::Half, float>,
     &k::scan_bwd_cpu<c10::BFloat16, float>},
};
}  // namespace

extern "C" const grainseg::cpu::ScanKernels* GRAINSEG_CAT(grainseg_scan_kernels_, GRAINSEG_ISA)() {
  return &kKernels;
}
