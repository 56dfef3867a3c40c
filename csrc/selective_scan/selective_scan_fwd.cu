// Mamba-compatible selective scan forward on CUDA: the shared scan kernel with one identity-order
// direction (csrc/cuda/scan_fwd.cuh).
#include "cuda/scan_fwd.cuh"

namespace grainseg {
namespace cuda {

cudaError_t selective_scan_fwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) { return launch_scan_fwd<1, decltype(tag)>(params, stream); });
}

}  // namespace cuda
}  // namespace grainseg
