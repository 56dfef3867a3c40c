// Hook for the CUDA kernels: bindings.cpp calls these for CUDA tensors when the extension is compiled with
// -DGRAINSEG_WITH_CUDA.  They are implemented by the CUDA side (csrc/cuda/scan_binding_cuda.cpp), which
// casts the problem, allocates the outputs on u's device and launches the .cu kernels (reusing ScanParams
// from scan_params.h, filled by scan_params_torch.h as for the CPU kernels).
//
// Contract (scan_ops.h's Impl, the same as the CPU kernels'):
//   * the caller has validated ranks, shapes, dtypes (floating point), n in 1..kMaxDState, chunk >= 1 and
//     that every tensor is on u's device, and ruled out empty problems; tensors may be non-contiguous;
//   * the problem is the canonical one of scan_params_torch.h; forward returns {y (b, c, L) in u's dtype,
//     ckpt (b, K, c, n_chunks, n) fp32/fp64}; backward takes that ckpt and returns the 7 gradients
//     {du, ddelta, dA, dB, dC, dD, ddelta_bias} in the canonical shapes and their inputs' dtypes (dD /
//     ddelta_bias (K, c), float32 when D / delta_bias is absent);
//   * chunk must be kCudaCheckpointChunk (ValueError otherwise).
#pragma once

#ifdef GRAINSEG_WITH_CUDA

#include <ATen/ATen.h>

#include <tuple>
#include <vector>

#include "scan_params_torch.h"

namespace grainseg {
namespace cuda_ops {

std::tuple<at::Tensor, at::Tensor> forward(const ScanProblem& p, bool delta_softplus, int64_t chunk);

std::vector<at::Tensor> backward(const ScanProblem& p, const at::Tensor& dy, bool delta_softplus,
                                 const at::Tensor& ckpt, int64_t chunk);

}  // namespace cuda_ops
}  // namespace grainseg

#endif  // GRAINSEG_WITH_CUDA
