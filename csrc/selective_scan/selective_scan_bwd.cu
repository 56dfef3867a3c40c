// Mamba-compatible selective scan backward on CUDA: the shared backward kernel with one identity-order
// direction (csrc/cuda/scan_bwd.cuh).
#include "cuda/scan_bwd.cuh"

namespace grainseg {
namespace cuda {

cudaError_t selective_scan_bwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) { return launch_scan_bwd<1, decltype(tag)>(params, stream); });
}

}  // namespace cuda
}  // namespace grainseg
