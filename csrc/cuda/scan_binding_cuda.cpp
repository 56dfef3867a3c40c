// Torch side of the CUDA scans: implements the hook of csrc/scan_cuda_api.h (called by csrc/bindings.cpp
// for CUDA tensors, after it validated shapes, dtypes and devices, built the canonical problem and ruled
// out empty problems).  Casts the problem to one input dtype, allocates outputs and work buffers with
// torch's caching allocator, fills ScanCudaParams (scan_params_torch.h, as for the CPU kernels, plus the
// CUDA-only buffers) and calls the launchers of csrc/cuda/scan_cuda.cuh on the current stream.
#include <ATen/ATen.h>
#ifndef GRAINSEG_CUDA_EMULATION
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <tuple>
#include <vector>

#include "cuda/scan_cuda.cuh"
#include "scan_cuda_api.h"
#include "scan_params_torch.h"

namespace grainseg {
namespace cuda_ops {
namespace {

using at::Tensor;

#ifdef GRAINSEG_CUDA_EMULATION
// tests/gpu/emu runs this file with CPU tensors and the kernels emulated on the host.
struct DeviceGuard {
  explicit DeviceGuard(const at::Device&) {}
};
cudaStream_t current_stream() { return nullptr; }
#else
using DeviceGuard = c10::cuda::CUDAGuard;
cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
#endif

// The problem as the CUDA kernels read it: u, delta, B, C in one input dtype (u's, or the compute dtype
// when they differ), A, D, delta_bias in the compute dtype, every tensor contiguous.
ScanProblem cast_for_cuda(const ScanProblem& p, int64_t chunk) {
  TORCH_CHECK_VALUE(chunk == cuda::kCheckpointChunk, p.op, ": the CUDA kernels need chunk == ",
                    cuda::kCheckpointChunk, " (grainseg._C.cuda_checkpoint_chunk), got ", chunk);
  const int64_t L = p.L(), bc = p.batch() * p.dim();
  TORCH_CHECK_VALUE(L < (int64_t(1) << 30) && bc < (int64_t(1) << 31), p.op,
                    ": sequence length and batch * channels must fit the kernels' 32-bit indices, got L = ", L,
                    ", batch * channels = ", bc);
  const auto u_type = p.u.scalar_type();
  const bool same = p.delta.scalar_type() == u_type && p.B.scalar_type() == u_type && p.C.scalar_type() == u_type;
  const auto in_type = same ? u_type : p.acc_type();  // mixed dtypes run in the compute dtype
  return p.cast(in_type, in_type, /*bc_contiguous=*/true);
}

cuda::ScanDtype scan_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return cuda::ScanDtype::kFloat32;
    case at::kHalf: return cuda::ScanDtype::kFloat16;
    case at::kBFloat16: return cuda::ScanDtype::kBFloat16;
    case at::kDouble: return cuda::ScanDtype::kFloat64;
    default: break;
  }
  TORCH_CHECK_VALUE(false, "grainseg CUDA scan: unsupported dtype ", t);
  return cuda::ScanDtype::kFloat32;  // not reached
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// Channels per backward block: the smallest divisor of both group sizes whose dB / dC partial buffers
// (one slab per block) fit GRAINSEG_CUDA_BWD_BUFFER_BYTES (default 512 MiB); the largest divisor (the
// least memory) when none fits.  More channels per block = less memory but fewer blocks.
int64_t channels_per_block(const ScanProblem& p) {
  const char* env = std::getenv("GRAINSEG_CUDA_BWD_BUFFER_BYTES");
  const int64_t budget = env ? std::max<int64_t>(1, std::atoll(env)) : (int64_t(512) << 20);
  const int64_t g = std::gcd(p.dim() / p.GB, p.dim() / p.GC);
  const int64_t per_slab = 2 * p.batch() * p.K * p.n() * p.L() * int64_t(c10::elementSize(p.acc_type()));
  for (int64_t cpb = 1; cpb <= g; ++cpb)
    if (g % cpb == 0 && (p.dim() / cpb) * per_slab <= budget) return cpb;
  return g;
}

}  // namespace

// Forward: y (b, c, L) in the input dtype and ckpt (b, K, c, n_chunks, n), plus the fp32 (fp64) accumulator
// of y over the SS2D directions.
std::tuple<Tensor, Tensor> forward(const ScanProblem& p, bool softplus, int64_t chunk) {
  const DeviceGuard guard(p.u.device());
  const ScanProblem t = cast_for_cuda(p, chunk);
  const auto in_type = t.u.scalar_type(), acc_type = t.A.scalar_type();
  cuda::ScanCudaParams P;
  const ScanForward out = prepare_forward(P, t, softplus, chunk);
  Tensor y_acc =
      (t.K == 1 || in_type == acc_type) ? out.y : at::empty(out.y.sizes(), out.y.options().dtype(acc_type));
  P.y_acc = y_acc.data_ptr();
  const cudaStream_t stream = current_stream();
  check_launch(p.op, t.K == 1 ? cuda::selective_scan_fwd_cuda(P, scan_dtype(in_type), stream)
                              : cuda::ss2d_fwd_cuda(P, scan_dtype(in_type), stream));
  return forward_result(p, out);
}

// Backward: the gradients in the dtypes the kernels use (input dtype for du, ddelta, dB, dC, compute dtype
// for dA, dD, ddelta_bias; backward_result converts), with the accumulator of du over the directions and
// the per-block partial sums the kernels reduce in a fixed order.
std::vector<Tensor> backward(const ScanProblem& p, const Tensor& dy, bool softplus, const Tensor& ckpt,
                             int64_t chunk) {
  const DeviceGuard guard(p.u.device());
  const ScanProblem t = cast_for_cuda(p, chunk);
  const auto in_type = t.u.scalar_type();
  const auto acc = t.u.options().dtype(t.A.scalar_type());
  const int64_t b = t.batch(), c = t.dim(), L = t.L(), n = t.n(), K = t.K;
  cuda::ScanCudaParams P;
  const ScanBackward g = prepare_backward(P, t, dy, ckpt, softplus, chunk);
  Tensor du_acc = (K == 1 || in_type == t.A.scalar_type()) ? g.du : at::empty({b, c, L}, acc);
  const int64_t cpb = channels_per_block(p);
  Tensor dB_part = at::empty({b, K, c / cpb, n, L}, acc);
  Tensor dC_part = at::empty({b, K, c / cpb, n, L}, acc);
  Tensor dA_part = at::empty({b, K, c, n}, acc);
  Tensor dD_part = at::empty({b, K, c}, acc);
  Tensor dbias_part = at::empty({b, K, c}, acc);
  P.du_acc = du_acc.data_ptr();
  P.chan_per_block = cpb;
  P.n_slabs = c / cpb;
  P.dB_part = dB_part.data_ptr();
  P.dC_part = dC_part.data_ptr();
  P.dA_part = dA_part.data_ptr();
  P.dD_part = dD_part.data_ptr();
  P.ddelta_bias_part = dbias_part.data_ptr();
  const cudaStream_t stream = current_stream();
  check_launch(p.op, K == 1 ? cuda::selective_scan_bwd_cuda(P, scan_dtype(in_type), stream)
                            : cuda::ss2d_bwd_cuda(P, scan_dtype(in_type), stream));
  return backward_result(p, g);
}

}  // namespace cuda_ops
}  // namespace grainseg
