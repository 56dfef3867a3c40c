// Hook for the CUDA kernels: bindings.cpp calls these for CUDA tensors when the extension is compiled with
// -DGRAINSEG_WITH_CUDA.  They are implemented by the CUDA side (csrc/**/*_cuda.cpp), which allocates the
// outputs on u's device and launches the .cu kernels (reusing ScanParams from scan_params.h).
//
// Contract (identical to the Python-visible functions of grainseg._C, see grainseg/ops/*.py):
//   * the binding has already validated ranks, shapes, dtypes (floating point), n in 1..256, chunk >= 1,
//     that every tensor is on u's device and that no size is zero; inputs may be non-contiguous;
//   * ss2d: u (b,c,h,w), delta (b,4,c,h,w), A (4,c,n), B and C (b,4,n,h,w), D and delta_bias (4,c);
//     selective_scan: u, delta (batch,dim,L), A (dim,n), B and C (batch,G,n,L), D and delta_bias (dim,);
//   * forward returns {y in u's dtype, ckpt (…, n_chunks, n) fp32/fp64}; backward returns the 7 gradients
//     {du, ddelta, dA, dB, dC, dD, ddelta_bias}, each in its input's dtype and shape (dD / ddelta_bias
//     float32 when D / delta_bias is absent).
#pragma once

#ifdef GRAINSEG_WITH_CUDA

#include <ATen/ATen.h>

#include <optional>
#include <tuple>
#include <vector>

namespace grainseg {
namespace cuda_ops {

using OptTensor = std::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor> ss2d_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                            const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                            const OptTensor& delta_bias, bool delta_softplus, int64_t chunk);

std::vector<at::Tensor> ss2d_bwd(const at::Tensor& dy, const at::Tensor& u, const at::Tensor& delta,
                                 const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                 const OptTensor& delta_bias, bool delta_softplus, const at::Tensor& ckpt,
                                 int64_t chunk);

std::tuple<at::Tensor, at::Tensor> selective_scan_fwd(const at::Tensor& u, const at::Tensor& delta,
                                                      const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                                      const OptTensor& D, const OptTensor& delta_bias,
                                                      bool delta_softplus, int64_t chunk);

std::vector<at::Tensor> selective_scan_bwd(const at::Tensor& dy, const at::Tensor& u, const at::Tensor& delta,
                                           const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                           const OptTensor& D, const OptTensor& delta_bias, bool delta_softplus,
                                           const at::Tensor& ckpt, int64_t chunk);

}  // namespace cuda_ops
}  // namespace grainseg

#endif  // GRAINSEG_WITH_CUDA
