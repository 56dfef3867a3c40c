// The canonical scan problem on the torch side, built once for both devices: the CPU binding
// (bindings.cpp) and the CUDA binding (cuda/scan_binding_cuda.cpp) take a ScanProblem, cast it to the
// dtypes their kernels read, and fill ScanParams / ScanBwdParams from it with the functions below (sizes,
// pointers, every stride, the outputs and the gradients).  Never included by .cu files.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>
#include <vector>

#include "scan_params.h"

namespace grainseg {

using OptTensor = std::optional<at::Tensor>;

// Both ops as one problem:
//   u (b, c, L), delta (b, K, c, L), A (K, c, n), B (b, K*GB, n, L), C (b, K*GC, n, L), D / bias (K, c)
// ss2d_scan: K = 4 directions on an h x w grid, GB = GC = 1; selective_scan: K = 1, h = 1, w = L (the
// identity order).  Views of the op's tensors (any strides), in their dtypes, until cast().
struct ScanProblem {
  const char* op = "";  // "ss2d_scan" or "selective_scan", for messages
  at::Tensor u, delta, A, B, C;
  OptTensor D, bias;
  int64_t K = 1, h = 1, w = 0, GB = 1, GC = 1;

  int64_t batch() const { return u.size(0); }
  int64_t dim() const { return u.size(1); }
  int64_t L() const { return u.size(2); }
  int64_t n() const { return A.size(2); }
  bool empty() const { return batch() == 0 || dim() == 0 || L() == 0; }
  int64_t n_chunks(int64_t chunk) const { return (L() + chunk - 1) / chunk; }
  std::vector<int64_t> ckpt_shape(int64_t chunk) const { return {batch(), K, dim(), n_chunks(chunk), n()}; }
  // The state and accumulation dtype: float64 for float64 u, else float32.
  at::ScalarType acc_type() const { return u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

  // The problem as a device's kernels read it: u and delta in `in` and contiguous; A, D, bias in
  // acc_type() and contiguous; B and C in `bc`, contiguous when `bc_contiguous` (else as given).
  ScanProblem cast(at::ScalarType in, at::ScalarType bc, bool bc_contiguous) const {
    ScanProblem t = *this;
    const at::ScalarType acc = acc_type();
    t.u = u.to(in).contiguous();
    t.delta = delta.to(in).contiguous();
    t.A = A.to(acc).contiguous();
    t.B = bc_contiguous ? B.to(bc).contiguous() : B.to(bc);
    t.C = bc_contiguous ? C.to(bc).contiguous() : C.to(bc);
    if (D) t.D = D->to(acc).contiguous();
    if (bias) t.bias = bias->to(acc).contiguous();
    return t;
  }
};

// ss2d_scan's u (b,c,h,w), delta (b,4,c,h,w), A (4,c,n), B / C (b,4,n,h,w), D / delta_bias (4,c).
inline ScanProblem ss2d_problem(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                const OptTensor& bias) {
  const int64_t b = u.size(0), c = u.size(1), h = u.size(2), w = u.size(3), n = A.size(2);
  ScanProblem p;
  p.op = "ss2d_scan";
  p.u = u.reshape({b, c, h * w});
  p.delta = delta.reshape({b, kNumDirections, c, h * w});
  p.A = A;
  p.B = B.reshape({b, kNumDirections, n, h * w});
  p.C = C.reshape({b, kNumDirections, n, h * w});
  p.D = D;
  p.bias = bias;
  p.K = kNumDirections;
  p.h = h;
  p.w = w;
  return p;
}

// selective_scan's u / delta (batch,dim,L), A (dim,n), B (batch,GB,n,L), C (batch,GC,n,L), D / delta_bias (dim,).
inline ScanProblem selective_problem(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                     const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                     const OptTensor& bias) {
  ScanProblem p;
  p.op = "selective_scan";
  p.u = u;
  p.delta = delta.unsqueeze(1);
  p.A = A.unsqueeze(0);
  p.B = B;
  p.C = C;
  if (D) p.D = D->unsqueeze(0);
  if (bias) p.bias = bias->unsqueeze(0);
  p.h = 1;
  p.w = u.size(2);
  p.GB = B.size(1);
  p.GC = C.size(1);
  return p;
}

// The (batch, group, dstate, position) strides of B, C, dB or dC.
inline void bc_strides(const at::Tensor& t, index_t& batch, index_t& group, index_t& dstate, index_t& pos) {
  batch = t.stride(0);
  group = t.stride(1);
  dstate = t.stride(2);
  pos = t.stride(3);
}

// Sizes, input pointers and input strides of a cast problem.
inline void fill_inputs(ScanParams& P, const ScanProblem& t, bool softplus, int64_t chunk) {
  P.batch = t.batch();
  P.dim = t.dim();
  P.n_dirs = t.K;
  P.height = t.h;
  P.width = t.w;
  P.seqlen = t.L();
  P.dstate = t.n();
  P.n_groups_B = t.GB;
  P.n_groups_C = t.GC;
  P.chunk = chunk;
  P.n_chunks = t.n_chunks(chunk);
  P.delta_softplus = softplus;
  P.u = t.u.data_ptr();
  P.delta = t.delta.data_ptr();
  P.A = t.A.data_ptr();
  P.B = t.B.data_ptr();
  P.C = t.C.data_ptr();
  P.D = t.D ? t.D->data_ptr() : nullptr;
  P.delta_bias = t.bias ? t.bias->data_ptr() : nullptr;
  P.u_batch_stride = t.u.stride(0);
  P.u_dim_stride = t.u.stride(1);
  P.delta_batch_stride = t.delta.stride(0);
  P.delta_dir_stride = t.delta.stride(1);
  P.delta_dim_stride = t.delta.stride(2);
  P.A_dir_stride = t.A.stride(0);
  P.A_dim_stride = t.A.stride(1);
  bc_strides(t.B, P.B_batch_stride, P.B_group_stride, P.B_dstate_stride, P.B_pos_stride);
  bc_strides(t.C, P.C_batch_stride, P.C_group_stride, P.C_dstate_stride, P.C_pos_stride);
  P.D_dir_stride = t.D ? t.D->stride(0) : 0;
  P.delta_bias_dir_stride = t.bias ? t.bias->stride(0) : 0;
}

// The forward's outputs: y (b, c, L) in the input dtype and ckpt (b, K, c, n_chunks, n) in the compute dtype.
struct ScanForward {
  at::Tensor y, ckpt;
};

// Allocates the forward's outputs for the cast problem t and fills P (inputs and outputs).
inline ScanForward prepare_forward(ScanParams& P, const ScanProblem& t, bool softplus, int64_t chunk) {
  ScanForward out;
  out.y = at::empty({t.batch(), t.dim(), t.L()}, t.u.options());
  out.ckpt = at::empty(t.ckpt_shape(chunk), t.A.options());
  fill_inputs(P, t, softplus, chunk);
  P.y = out.y.data_ptr();
  P.y_batch_stride = out.y.stride(0);
  P.y_dim_stride = out.y.stride(1);
  P.ckpt = out.ckpt.data_ptr();
  return out;
}

// The backward's inputs dy and ckpt as the kernels read them, and the gradients they write: du, ddelta
// like the cast u, delta; dA, dD, ddelta_bias (K, c) in the compute dtype; dB, dC like the cast B, C.
struct ScanBackward {
  at::Tensor dy, ckpt;
  at::Tensor du, ddelta, dA, dB, dC, dD, dbias;
};

// Allocates the gradients for the cast problem t, converts dy (any shape with t.u's element count) and
// ckpt (b, K, c, n_chunks, n) and fills P (inputs, ckpt, dy and every gradient).
inline ScanBackward prepare_backward(ScanBwdParams& P, const ScanProblem& t, const at::Tensor& dy,
                                     const at::Tensor& ckpt, bool softplus, int64_t chunk) {
  ScanBackward g;
  g.dy = dy.reshape(t.u.sizes()).to(t.u.scalar_type()).contiguous();
  g.ckpt = ckpt.contiguous();
  g.du = at::empty(t.u.sizes(), t.u.options());
  g.ddelta = at::empty(t.delta.sizes(), t.delta.options());
  g.dA = at::empty(t.A.sizes(), t.A.options());
  g.dB = at::empty(t.B.sizes(), t.B.options());
  g.dC = at::empty(t.C.sizes(), t.C.options());
  g.dD = at::empty({t.K, t.dim()}, t.A.options());
  g.dbias = at::empty({t.K, t.dim()}, t.A.options());
  fill_inputs(P, t, softplus, chunk);
  P.ckpt = g.ckpt.data_ptr();
  P.dy = g.dy.data_ptr();
  P.dy_batch_stride = g.dy.stride(0);
  P.dy_dim_stride = g.dy.stride(1);
  P.du = g.du.data_ptr();
  P.du_batch_stride = g.du.stride(0);
  P.du_dim_stride = g.du.stride(1);
  P.ddelta = g.ddelta.data_ptr();
  P.ddelta_batch_stride = g.ddelta.stride(0);
  P.ddelta_dir_stride = g.ddelta.stride(1);
  P.ddelta_dim_stride = g.ddelta.stride(2);
  P.dA = g.dA.data_ptr();
  P.dB = g.dB.data_ptr();
  bc_strides(g.dB, P.dB_batch_stride, P.dB_group_stride, P.dB_dstate_stride, P.dB_pos_stride);
  P.dC = g.dC.data_ptr();
  bc_strides(g.dC, P.dC_batch_stride, P.dC_group_stride, P.dC_dstate_stride, P.dC_pos_stride);
  P.dD = g.dD.data_ptr();
  P.ddelta_bias = g.dbias.data_ptr();
  return g;
}

inline at::ScalarType dtype_or_float(const OptTensor& t) { return t ? t->scalar_type() : at::kFloat; }

// The forward's results for the problem p: y in u's dtype (b, c, L) and ckpt.
inline std::tuple<at::Tensor, at::Tensor> forward_result(const ScanProblem& p, const ScanForward& out) {
  return {out.y.to(p.u.scalar_type()), out.ckpt};
}

// The backward's results for the problem p, {du, ddelta, dA, dB, dC, dD, ddelta_bias} in the canonical
// shapes and the inputs' dtypes (dD / ddelta_bias float32 when D / delta_bias is absent).
inline std::vector<at::Tensor> backward_result(const ScanProblem& p, const ScanBackward& g) {
  return {g.du.to(p.u.scalar_type()),     g.ddelta.to(p.delta.scalar_type()), g.dA.to(p.A.scalar_type()),
          g.dB.to(p.B.scalar_type()),     g.dC.to(p.C.scalar_type()),         g.dD.to(dtype_or_float(p.D)),
          g.dbias.to(dtype_or_float(p.bias))};
}

// The results of an empty problem (batch, channels or L zero): zeros, no kernel.
inline std::tuple<at::Tensor, at::Tensor> empty_forward(const ScanProblem& p, int64_t chunk) {
  return {at::zeros(p.u.sizes(), p.u.options()), at::zeros(p.ckpt_shape(chunk), p.u.options().dtype(p.acc_type()))};
}

inline std::vector<at::Tensor> empty_backward(const ScanProblem& p) {
  auto zeros_as = [](const at::Tensor& t) { return at::zeros(t.sizes(), t.options()); };
  auto param_grad = [&](const OptTensor& x) { return at::zeros({p.K, p.dim()}, p.u.options().dtype(dtype_or_float(x))); };
  return {zeros_as(p.u), zeros_as(p.delta), zeros_as(p.A), zeros_as(p.B), zeros_as(p.C), param_grad(p.D),
          param_grad(p.bias)};
}

}  // namespace grainseg
