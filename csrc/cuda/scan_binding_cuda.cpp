// Torch side of the CUDA scans: implements the hook of csrc/scan_cuda_api.h (called by csrc/bindings.cpp
// for CUDA tensors, after it validated shapes, dtypes and devices and ruled out empty problems).
// Converts the inputs to one input dtype, allocates outputs and work buffers with torch's caching
// allocator, fills ScanCudaParams and calls the launchers of csrc/cuda/scan_cuda.cuh on the current stream.
#include <ATen/ATen.h>
#ifndef GRAINSEG_CUDA_EMULATION
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <numeric>

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

// Both ops as one problem: u (b,c,L), delta (b,K,c,L), A (K,c,n), B (b,K*GB,n,L), C (b,K*GC,n,L), D and
// delta_bias (K,c); every tensor contiguous, u / delta / B / C in one input dtype, the rest in fp32 (fp64).
struct Problem {
  Tensor u, delta, A, B, C, D, bias;  // D / bias undefined when absent
  at::ScalarType in_type, acc_type;
  int64_t K, h, w, GB, GC;
  int64_t batch() const { return u.size(0); }
  int64_t dim() const { return u.size(1); }
  int64_t L() const { return u.size(2); }
  int64_t n() const { return A.size(2); }
};

Problem make_problem(const char* op, const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                     const Tensor& C, const OptTensor& D, const OptTensor& bias, int64_t K, int64_t h, int64_t w,
                     int64_t chunk) {
  TORCH_CHECK_VALUE(chunk == cuda::kCheckpointChunk, op, ": the CUDA kernels need chunk == ",
                    cuda::kCheckpointChunk, " (CUDA_CHECKPOINT_CHUNK in grainseg/ops/_scan_autograd.py), got ",
                    chunk);
  const int64_t b = u.size(0), c = u.size(1), L = h * w, n = A.size(-1);
  TORCH_CHECK_VALUE(L < (int64_t(1) << 30) && b * c < (int64_t(1) << 31), op,
                    ": sequence length and batch * channels must fit the kernels' 32-bit indices, got L = ", L,
                    ", batch * channels = ", b * c);
  Problem p;
  p.acc_type = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const bool same = delta.scalar_type() == u.scalar_type() && B.scalar_type() == u.scalar_type() &&
                    C.scalar_type() == u.scalar_type();
  p.in_type = same ? u.scalar_type() : p.acc_type;  // mixed dtypes run in the compute dtype
  p.u = u.reshape({b, c, L}).to(p.in_type).contiguous();
  p.delta = delta.reshape({b, K, c, L}).to(p.in_type).contiguous();
  p.A = A.reshape({K, c, n}).to(p.acc_type).contiguous();
  p.B = B.reshape({b, -1, n, L}).to(p.in_type).contiguous();
  p.C = C.reshape({b, -1, n, L}).to(p.in_type).contiguous();
  if (D) p.D = D->reshape({K, c}).to(p.acc_type).contiguous();
  if (bias) p.bias = bias->reshape({K, c}).to(p.acc_type).contiguous();
  p.K = K;
  p.h = h;
  p.w = w;
  p.GB = p.B.size(1) / K;
  p.GC = p.C.size(1) / K;
  return p;
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

// B and C stay (b, G, n, L) on the GPU.
void fill_inputs(cuda::ScanCudaParams& P, const Problem& p, bool softplus) {
  fill_scan_inputs(P, p.u, p.delta, p.A, p.B, p.C, p.D, p.bias, p.K, p.h, p.w, p.GB, p.GC, /*bc_pos_dim=*/3,
                   softplus, cuda::kCheckpointChunk);
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// Forward: y (b, c, L) in the input dtype and ckpt (b, K, c, n_chunks, n).
std::tuple<Tensor, Tensor> forward(const char* op, const Problem& p, bool softplus) {
  cuda::ScanCudaParams P;
  fill_inputs(P, p, softplus);
  const auto opts = p.u.options();
  Tensor y = at::empty({p.batch(), p.dim(), p.L()}, opts.dtype(p.in_type));
  Tensor ckpt = at::empty({p.batch(), p.K, p.dim(), P.n_chunks, p.n()}, opts.dtype(p.acc_type));
  Tensor y_acc = (p.K == 1 || p.in_type == p.acc_type) ? y : at::empty(y.sizes(), opts.dtype(p.acc_type));
  P.y = y.data_ptr();
  P.y_batch_stride = y.stride(0);
  P.y_dim_stride = y.stride(1);
  P.y_acc = y_acc.data_ptr();
  P.ckpt = ckpt.data_ptr();
  const cudaStream_t stream = current_stream();
  check_launch(op, p.K == 1 ? cuda::selective_scan_fwd_cuda(P, scan_dtype(p.in_type), stream)
                            : cuda::ss2d_fwd_cuda(P, scan_dtype(p.in_type), stream));
  return {y, ckpt};
}

// Channels per backward block: the smallest divisor of both group sizes whose dB / dC partial buffers
// (one slab per block) fit GRAINSEG_CUDA_BWD_BUFFER_BYTES (default 512 MiB); the largest divisor (the
// least memory) when none fits.  More channels per block = less memory but fewer blocks.
int64_t channels_per_block(const Problem& p) {
  const char* env = std::getenv("GRAINSEG_CUDA_BWD_BUFFER_BYTES");
  const int64_t budget = env ? std::max<int64_t>(1, std::atoll(env)) : (int64_t(512) << 20);
  const int64_t g = std::gcd(p.dim() / p.GB, p.dim() / p.GC);
  const int64_t per_slab = 2 * p.batch() * p.K * p.n() * p.L() * int64_t(c10::elementSize(p.acc_type));
  for (int64_t cpb = 1; cpb <= g; ++cpb)
    if (g % cpb == 0 && (p.dim() / cpb) * per_slab <= budget) return cpb;
  return g;
}

// Backward: {du (b,c,L), ddelta (b,K,c,L), dA (K,c,n), dB, dC (b,K*G,n,L), dD, ddelta_bias (K,c)} in the
// dtypes the kernels use (input dtype for the first five but dA, compute dtype for the parameters).
std::vector<Tensor> backward(const char* op, const Problem& p, const Tensor& dy, bool softplus, const Tensor& ckpt) {
  cuda::ScanCudaParams P;
  fill_inputs(P, p, softplus);
  const auto opts = p.u.options();
  const auto in = opts.dtype(p.in_type), acc = opts.dtype(p.acc_type);
  const int64_t b = p.batch(), c = p.dim(), L = p.L(), n = p.n(), K = p.K;
  Tensor dy_c = dy.reshape({b, c, L}).to(p.in_type).contiguous();
  Tensor ckpt_c = ckpt.contiguous();
  Tensor du = at::empty({b, c, L}, in);
  Tensor ddelta = at::empty({b, K, c, L}, in);
  Tensor dA = at::empty({K, c, n}, acc);
  Tensor dB = at::empty(p.B.sizes(), in);
  Tensor dC = at::empty(p.C.sizes(), in);
  Tensor dD = at::empty({K, c}, acc);
  Tensor dbias = at::empty({K, c}, acc);
  Tensor du_acc = (K == 1 || p.in_type == p.acc_type) ? du : at::empty({b, c, L}, acc);
  const int64_t cpb = channels_per_block(p);
  Tensor dB_part = at::empty({b, K, c / cpb, n, L}, acc);
  Tensor dC_part = at::empty({b, K, c / cpb, n, L}, acc);
  Tensor dA_part = at::empty({b, K, c, n}, acc);
  Tensor dD_part = at::empty({b, K, c}, acc);
  Tensor dbias_part = at::empty({b, K, c}, acc);

  P.ckpt = ckpt_c.data_ptr();
  P.dy = dy_c.data_ptr();
  P.dy_batch_stride = dy_c.stride(0);
  P.dy_dim_stride = dy_c.stride(1);
  P.du = du.data_ptr();
  P.du_batch_stride = du.stride(0);
  P.du_dim_stride = du.stride(1);
  P.ddelta = ddelta.data_ptr();
  P.ddelta_batch_stride = ddelta.stride(0);
  P.ddelta_dir_stride = ddelta.stride(1);
  P.ddelta_dim_stride = ddelta.stride(2);
  P.dA = dA.data_ptr();
  P.dB = dB.data_ptr();
  P.dC = dC.data_ptr();
  P.dD = dD.data_ptr();
  P.ddelta_bias = dbias.data_ptr();
  P.du_acc = du_acc.data_ptr();
  P.chan_per_block = cpb;
  P.n_slabs = c / cpb;
  P.dB_part = dB_part.data_ptr();
  P.dC_part = dC_part.data_ptr();
  P.dA_part = dA_part.data_ptr();
  P.dD_part = dD_part.data_ptr();
  P.ddelta_bias_part = dbias_part.data_ptr();
  const cudaStream_t stream = current_stream();
  check_launch(op, K == 1 ? cuda::selective_scan_bwd_cuda(P, scan_dtype(p.in_type), stream)
                          : cuda::ss2d_bwd_cuda(P, scan_dtype(p.in_type), stream));
  return {du, ddelta, dA, dB, dC, dD, dbias};
}

at::ScalarType dtype_or_float(const OptTensor& t) { return t ? t->scalar_type() : at::kFloat; }

// Gradients back in their inputs' shapes and dtypes; dD / ddelta_bias are shaped like A without its last
// dim ((4, c) or (dim,)) and fp32 when D / delta_bias is absent.
std::vector<Tensor> as_inputs(const std::vector<Tensor>& g, const Tensor& u, const Tensor& delta, const Tensor& A,
                              const Tensor& B, const Tensor& C, const OptTensor& D, const OptTensor& bias) {
  const auto param_shape = A.sizes().slice(0, A.dim() - 1);
  return {g[0].view(u.sizes()).to(u.scalar_type()),
          g[1].view(delta.sizes()).to(delta.scalar_type()),
          g[2].view(A.sizes()).to(A.scalar_type()),
          g[3].view(B.sizes()).to(B.scalar_type()),
          g[4].view(C.sizes()).to(C.scalar_type()),
          g[5].view(param_shape).to(dtype_or_float(D)),
          g[6].view(param_shape).to(dtype_or_float(bias))};
}

}  // namespace

std::tuple<Tensor, Tensor> ss2d_fwd(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                    const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                                    bool delta_softplus, int64_t chunk) {
  const DeviceGuard guard(u.device());
  const Problem p = make_problem("ss2d_scan", u, delta, A, B, C, D, delta_bias, kNumDirections, u.size(2),
                                 u.size(3), chunk);
  auto [y, ckpt] = forward("ss2d_scan", p, delta_softplus);
  return {y.view(u.sizes()).to(u.scalar_type()), ckpt};
}

std::vector<Tensor> ss2d_bwd(const Tensor& dy, const Tensor& u, const Tensor& delta, const Tensor& A,
                             const Tensor& B, const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                             bool delta_softplus, const Tensor& ckpt, int64_t chunk) {
  const DeviceGuard guard(u.device());
  const Problem p = make_problem("ss2d_scan", u, delta, A, B, C, D, delta_bias, kNumDirections, u.size(2),
                                 u.size(3), chunk);
  return as_inputs(backward("ss2d_scan", p, dy, delta_softplus, ckpt), u, delta, A, B, C, D, delta_bias);
}

std::tuple<Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                              const Tensor& B, const Tensor& C, const OptTensor& D,
                                              const OptTensor& delta_bias, bool delta_softplus, int64_t chunk) {
  const DeviceGuard guard(u.device());
  const Problem p = make_problem("selective_scan", u, delta, A, B, C, D, delta_bias, 1, 1, u.size(2), chunk);
  auto [y, ckpt] = forward("selective_scan", p, delta_softplus);
  return {y.to(u.scalar_type()), ckpt.squeeze(1)};
}

std::vector<Tensor> selective_scan_bwd(const Tensor& dy, const Tensor& u, const Tensor& delta, const Tensor& A,
                                       const Tensor& B, const Tensor& C, const OptTensor& D,
                                       const OptTensor& delta_bias, bool delta_softplus, const Tensor& ckpt,
                                       int64_t chunk) {
  const DeviceGuard guard(u.device());
  const Problem p = make_problem("selective_scan", u, delta, A, B, C, D, delta_bias, 1, 1, u.size(2), chunk);
  return as_inputs(backward("selective_scan", p, dy, delta_softplus, ckpt.unsqueeze(1)), u, delta, A, B, C, D,
                   delta_bias);
}

}  // namespace cuda_ops
}  // namespace grainseg
