// The four functions of grainseg._C - ss2d_fwd, ss2d_bwd, selective_scan_fwd, selective_scan_bwd - over a
// device implementation: validation, the canonical problem (scan_params_torch.h), empty problems, and
// the results back in the op's shapes.  bindings.cpp instantiates them with its per-device dispatch (CPU
// kernels, CUDA kernels under GRAINSEG_WITH_CUDA); tests/gpu/emu with the emulated CUDA kernels.
//
// Impl provides, for non-empty canonical problems (results in the canonical shapes and the inputs' dtypes):
//   static std::tuple<Tensor, Tensor> forward(const ScanProblem&, bool softplus, int64_t chunk);
//       -> y (b, c, L), ckpt (b, K, c, n_chunks, n)
//   static std::vector<Tensor> backward(const ScanProblem&, const Tensor& dy, bool softplus,
//                                       const Tensor& ckpt, int64_t chunk);
//       -> {du, ddelta, dA, dB, dC, dD, ddelta_bias}; ckpt comes as (b, K, c, n_chunks, n)
#pragma once

#include <ATen/ATen.h>

#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "scan_params.h"
#include "scan_params_torch.h"

namespace grainseg {
namespace scan_ops {

using at::Tensor;
// The (name, tensor) pairs of an op's inputs.
using NamedTensors = std::vector<std::pair<const char*, const Tensor*>>;

// ------------------------------------------------------------------------------------------ validation

inline std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

inline void check_float(const char* op, const char* name, const Tensor& t) {
  TORCH_CHECK_VALUE(t.defined(), op, ": argument '", name, "' is required, got None");
  const auto st = t.scalar_type();
  TORCH_CHECK_VALUE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
                    ": argument '", name, "' must be a float16, bfloat16, float32 or float64 tensor, got ",
                    st);
}

inline void check_shape(const char* op, const char* name, const Tensor& t, const std::vector<int64_t>& want,
                        const char* layout) {
  TORCH_CHECK_VALUE(t.sizes().vec() == want, op, ": argument '", name, "' must have shape ", layout, " = ",
                    shape_str(want), ", got ", shape_str(t.sizes()));
}

inline void check_rank(const char* op, const char* name, const Tensor& t, int64_t rank, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == rank, op, ": argument '", name, "' must have shape ", layout, ", got ",
                    shape_str(t.sizes()));
}

inline void check_common(const char* op, const NamedTensors& tensors, int64_t n, int64_t chunk) {
  const Tensor& u = *tensors.front().second;
  for (const auto& [name, t] : tensors)
    TORCH_CHECK_VALUE(t->device() == u.device(), op, ": all tensors must be on one device; 'u' is on ",
                      u.device(), " but '", name, "' is on ", t->device());
  TORCH_CHECK_VALUE(n >= 1 && n <= kMaxDState, op, ": the state size N (last dim of 'A') must be in 1..",
                    kMaxDState, ", got ", n);
  TORCH_CHECK_VALUE(chunk >= 1, op, ": argument 'chunk' must be >= 1, got ", chunk);
}

// The (name, tensor) pairs of an op's inputs, absent optionals left out.
inline NamedTensors named_inputs(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                 const Tensor& C, const OptTensor& D, const OptTensor& bias) {
  NamedTensors out{{"u", &u}, {"delta", &delta}, {"A", &A}, {"B", &B}, {"C", &C}};
  if (D) out.emplace_back("D", &*D);
  if (bias) out.emplace_back("delta_bias", &*bias);
  return out;
}

// Floating dtypes of every input, then ranks of u and A (so that their sizes can be read).
inline void check_inputs(const char* op, const NamedTensors& inputs, int64_t u_rank, const char* u_layout,
                         int64_t A_rank, const char* A_layout) {
  for (const auto& [name, t] : inputs) check_float(op, name, *t);
  check_rank(op, "u", *inputs[0].second, u_rank, u_layout);
  check_rank(op, "A", *inputs[2].second, A_rank, A_layout);
}

inline void check_ss2d(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                       const OptTensor& D, const OptTensor& bias, int64_t chunk) {
  const char* op = "ss2d_scan";
  const auto inputs = named_inputs(u, delta, A, B, C, D, bias);
  check_inputs(op, inputs, 4, "(batch, channels, height, width)", 3, "(4, channels, d_state)");
  const int64_t b = u.size(0), c = u.size(1), h = u.size(2), w = u.size(3), n = A.size(2);
  check_common(op, inputs, n, chunk);
  check_shape(op, "A", A, {kNumDirections, c, n}, "(4, channels, d_state)");
  check_shape(op, "delta", delta, {b, kNumDirections, c, h, w}, "(batch, 4, channels, height, width)");
  check_shape(op, "B", B, {b, kNumDirections, n, h, w}, "(batch, 4, d_state, height, width)");
  check_shape(op, "C", C, {b, kNumDirections, n, h, w}, "(batch, 4, d_state, height, width)");
  if (D) check_shape(op, "D", *D, {kNumDirections, c}, "(4, channels)");
  if (bias) check_shape(op, "delta_bias", *bias, {kNumDirections, c}, "(4, channels)");
}

inline void check_selective(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                            const Tensor& C, const OptTensor& D, const OptTensor& bias, int64_t chunk) {
  const char* op = "selective_scan";
  const auto inputs = named_inputs(u, delta, A, B, C, D, bias);
  check_inputs(op, inputs, 3, "(batch, dim, L)", 2, "(dim, d_state)");
  const int64_t batch = u.size(0), dim = u.size(1), L = u.size(2), n = A.size(1);
  check_common(op, inputs, n, chunk);
  check_shape(op, "delta", delta, {batch, dim, L}, "(batch, dim, L)");
  check_shape(op, "A", A, {dim, n}, "(dim, d_state)");
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"B", &B}, {"C", &C}}) {
    check_rank(op, name, *t, 4, "(batch, groups, d_state, L)");
    const int64_t g = t->size(1);
    TORCH_CHECK_VALUE(g >= 1 && dim % g == 0, op, ": argument '", name, "' has ", g,
                      " groups, which must divide dim = ", dim);
    check_shape(op, name, *t, {batch, g, n, L}, "(batch, groups, d_state, L)");
  }
  if (D) check_shape(op, "D", *D, {dim}, "(dim,)");
  if (bias) check_shape(op, "delta_bias", *bias, {dim}, "(dim,)");
}

inline void check_grad_inputs(const char* op, const Tensor& dy, const Tensor& u, const Tensor& ckpt,
                              const std::vector<int64_t>& ckpt_shape) {
  check_float(op, "dy", dy);
  TORCH_CHECK_VALUE(dy.sizes() == u.sizes(), op, ": argument 'dy' must have u's shape ", shape_str(u.sizes()),
                    ", got ", shape_str(dy.sizes()));
  TORCH_CHECK_VALUE(dy.device() == u.device() && ckpt.device() == u.device(), op,
                    ": 'dy' and 'ckpt' must be on u's device ", u.device());
  const auto ct = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_VALUE(ckpt.scalar_type() == ct, op, ": argument 'ckpt' must be ", ct, " (the forward's), got ",
                    ckpt.scalar_type());
  check_shape(op, "ckpt", ckpt, ckpt_shape, "(..., n_chunks, d_state) from the forward with this chunk");
}

// ------------------------------------------------------------------------------------ the four functions

template <typename Impl>
std::tuple<Tensor, Tensor> forward(const ScanProblem& p, bool softplus, int64_t chunk) {
  return p.empty() ? empty_forward(p, chunk) : Impl::forward(p, softplus, chunk);
}

template <typename Impl>
std::vector<Tensor> backward(const ScanProblem& p, const Tensor& dy, bool softplus, const Tensor& ckpt,
                             int64_t chunk) {
  return p.empty() ? empty_backward(p) : Impl::backward(p, dy, softplus, ckpt, chunk);
}

template <typename Impl>
struct ScanOps {
  static std::tuple<Tensor, Tensor> ss2d_fwd(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                             const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                                             bool delta_softplus, int64_t chunk) {
    check_ss2d(u, delta, A, B, C, D, delta_bias, chunk);
    const ScanProblem p = ss2d_problem(u, delta, A, B, C, D, delta_bias);
    auto [y, ckpt] = forward<Impl>(p, delta_softplus, chunk);
    return {y.view(u.sizes()), ckpt};
  }

  static std::vector<Tensor> ss2d_bwd(const Tensor& dy, const Tensor& u, const Tensor& delta, const Tensor& A,
                                      const Tensor& B, const Tensor& C, const OptTensor& D,
                                      const OptTensor& delta_bias, bool delta_softplus, const Tensor& ckpt,
                                      int64_t chunk) {
    check_ss2d(u, delta, A, B, C, D, delta_bias, chunk);
    const ScanProblem p = ss2d_problem(u, delta, A, B, C, D, delta_bias);
    check_grad_inputs(p.op, dy, u, ckpt, p.ckpt_shape(chunk));
    std::vector<Tensor> g = backward<Impl>(p, dy, delta_softplus, ckpt, chunk);
    return {g[0].view(u.sizes()), g[1].view(delta.sizes()), g[2], g[3].view(B.sizes()),
            g[4].view(C.sizes()), g[5], g[6]};
  }

  static std::tuple<Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                                       const Tensor& B, const Tensor& C, const OptTensor& D,
                                                       const OptTensor& delta_bias, bool delta_softplus,
                                                       int64_t chunk) {
    check_selective(u, delta, A, B, C, D, delta_bias, chunk);
    const ScanProblem p = selective_problem(u, delta, A, B, C, D, delta_bias);
    auto [y, ckpt] = forward<Impl>(p, delta_softplus, chunk);
    return {y, ckpt.squeeze(1)};
  }

  static std::vector<Tensor> selective_scan_bwd(const Tensor& dy, const Tensor& u, const Tensor& delta,
                                                const Tensor& A, const Tensor& B, const Tensor& C,
                                                const OptTensor& D, const OptTensor& delta_bias,
                                                bool delta_softplus, const Tensor& ckpt, int64_t chunk) {
    check_selective(u, delta, A, B, C, D, delta_bias, chunk);
    const ScanProblem p = selective_problem(u, delta, A, B, C, D, delta_bias);
    std::vector<int64_t> ckpt_shape = p.ckpt_shape(chunk);
    ckpt_shape.erase(ckpt_shape.begin() + 1);  // no direction dim in the 1-D op
    check_grad_inputs(p.op, dy, u, ckpt, ckpt_shape);
    std::vector<Tensor> g = backward<Impl>(p, dy, delta_softplus, ckpt.unsqueeze(1), chunk);
    return {g[0], g[1].squeeze(1), g[2].squeeze(0), g[3], g[4], g[5].squeeze(0), g[6].squeeze(0)};
  }
};

}  // namespace scan_ops
}  // namespace grainseg
