// Explicit instantiations of the CPU scan kernels for the supported input types.  Kept apart from the
// binding so the heavy torch/extension.h headers and the kernels compile in parallel.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "cpu/scan_cpu.h"
#include "cpu/scan_cpu_kernel.h"

namespace grainseg {
namespace cpu {

#define GRAINSEG_INSTANTIATE(in_t, acc_t)                              \
  template void scan_fwd_cpu<in_t, acc_t>(const ScanParams&);         \
  template void scan_bwd_cpu<in_t, acc_t>(const ScanBwdParams&);

GRAINSEG_INSTANTIATE(float, float)
GRAINSEG_INSTANTIATE(double, double)
GRAINSEG_INSTANTIATE(c10::Half, float)
GRAINSEG_INSTANTIATE(c10::BFloat16, float)

#undef GRAINSEG_INSTANTIATE

}  // namespace cpu
}  // namespace grainseg
