// SS2D backward on CUDA: the shared backward kernel with the four direction orders (csrc/cuda/scan_bwd.cuh).
#include "cuda/scan_bwd.cuh"

namespace grainseg {
namespace cuda {

cudaError_t ss2d_bwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) { return launch_scan_bwd<kNumDirections, decltype(tag)>(params, stream); });
}

}  // namespace cuda
}  // namespace grainseg
