// SS2D forward on CUDA: the shared scan kernel with the four direction orders (csrc/cuda/scan_fwd.cuh).
#include "cuda/scan_fwd.cuh"

namespace grainseg {
namespace cuda {

cudaError_t ss2d_fwd_cuda(const ScanCudaParams& params, ScanDtype dtype, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) { return launch_scan_fwd<kNumDirections, decltype(tag)>(params, stream); });
}

}  // namespace cuda
}  // namespace grainseg
