// pybind module grainseg._C: validates the scan ops' arguments, allocates outputs, dispatches on dtype.
//
// The only file that sees both torch and the kernels.  Both ops are brought to one canonical problem
//   u (b, c, L), delta (b, K, c, L), A (K, c, n), B (b, K*GB, n, L), C (b, K*GC, n, L), D / bias (K, c)
// (ss2d: K = 4 directions on an h x w grid, GB = GC = 1; selective_scan: K = 1, h = 1, w = L) and run
// by the same templated CPU kernels (cpu/scan_cpu_kernel.h).  CUDA tensors go to the functions declared
// in scan_cuda_api.h when compiled with -DGRAINSEG_WITH_CUDA.
#include <torch/extension.h>

#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/scan_cpu.h"
#include "cpu/scan_cpu_isa.h"
#include "scan_cuda_api.h"
#include "scan_params.h"
#include "scan_params_torch.h"

namespace grainseg {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

// ------------------------------------------------------------------------------------------ validation

void check_float(const char* op, const char* name, const Tensor& t) {
  TORCH_CHECK_VALUE(t.defined(), op, ": argument '", name, "' is required, got None");
  const auto st = t.scalar_type();
  TORCH_CHECK_VALUE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
                    ": argument '", name, "' must be a float16, bfloat16, float32 or float64 tensor, got ",
                    st);
}

void check_shape(const char* op, const char* name, const Tensor& t, const std::vector<int64_t>& want,
                 const char* layout) {
  TORCH_CHECK_VALUE(t.sizes().vec() == want, op, ": argument '", name, "' must have shape ", layout, " = ",
                    shape_str(want), ", got ", shape_str(t.sizes()));
}

void check_rank(const char* op, const char* name, const Tensor& t, int64_t rank, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == rank, op, ": argument '", name, "' must have shape ", layout, ", got ",
                    shape_str(t.sizes()));
}

void check_common(const char* op, const std::vector<std::pair<const char*, const Tensor*>>& tensors,
                  int64_t n, int64_t chunk) {
  const Tensor& u = *tensors.front().second;
  for (const auto& [name, t] : tensors)
    TORCH_CHECK_VALUE(t->device() == u.device(), op, ": all tensors must be on one device; 'u' is on ",
                      u.device(), " but '", name, "' is on ", t->device());
  TORCH_CHECK_VALUE(n >= 1 && n <= kMaxDState, op, ": the state size N (last dim of 'A') must be in 1..",
                    kMaxDState, ", got ", n);
  TORCH_CHECK_VALUE(chunk >= 1, op, ": argument 'chunk' must be >= 1, got ", chunk);
}

// The (name, tensor) pairs of an op's inputs, absent optionals left out.
std::vector<std::pair<const char*, const Tensor*>> named_inputs(const Tensor& u, const Tensor& delta,
                                                                const Tensor& A, const Tensor& B, const Tensor& C,
                                                                const OptTensor& D, const OptTensor& bias) {
  std::vector<std::pair<const char*, const Tensor*>> out{{"u", &u}, {"delta", &delta}, {"A", &A}, {"B", &B},
                                                         {"C", &C}};
  if (D) out.emplace_back("D", &*D);
  if (bias) out.emplace_back("delta_bias", &*bias);
  return out;
}

// Floating dtypes of every input, then ranks of u and A (so that their sizes can be read).
void check_inputs(const char* op, const std::vector<std::pair<const char*, const Tensor*>>& inputs,
                  int64_t u_rank, const char* u_layout, int64_t A_rank, const char* A_layout) {
  for (const auto& [name, t] : inputs) check_float(op, name, *t);
  check_rank(op, "u", *inputs[0].second, u_rank, u_layout);
  check_rank(op, "A", *inputs[2].second, A_rank, A_layout);
}

void check_ss2d(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
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

void check_selective(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                     const OptTensor& D, const OptTensor& bias, int64_t chunk) {
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

void check_grad_inputs(const char* op, const Tensor& dy, const Tensor& u, const Tensor& ckpt,
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

// ------------------------------------------------------------------------------------ canonical problem

// Both ops as one problem (see the top of the file).  Tensors keep their dtypes here.
struct Problem {
  Tensor u, delta, A, B, C;  // (b,c,L), (b,K,c,L), (K,c,n), (b,K*GB,n,L), (b,K*GC,n,L)
  OptTensor D, bias;         // (K, c)
  int64_t K = 1, h = 1, w = 0, GB = 1, GC = 1;

  int64_t batch() const { return u.size(0); }
  int64_t dim() const { return u.size(1); }
  int64_t L() const { return u.size(2); }
  int64_t n() const { return A.size(2); }
  int64_t n_chunks(int64_t chunk) const { return (L() + chunk - 1) / chunk; }
  std::vector<int64_t> ckpt_shape(int64_t chunk) const { return {batch(), K, dim(), n_chunks(chunk), n()}; }
};

Problem ss2d_problem(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                     const OptTensor& D, const OptTensor& bias) {
  const int64_t b = u.size(0), c = u.size(1), h = u.size(2), w = u.size(3), n = A.size(2);
  Problem p;
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

Problem selective_problem(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                          const OptTensor& D, const OptTensor& bias) {
  Problem p;
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

// Tensors converted for the CPU kernels: u / delta in one input type, the rest in the compute type.  B and
// C stay (b, G, n, L) as given: the kernel relays them into its step rows itself (step_order_rows).
struct CpuTensors {
  at::ScalarType in_type, acc_type;
  Tensor u, delta, A, B, C, D, bias;  // D / bias undefined when absent
};

CpuTensors prepare_cpu(const Problem& p) {
  CpuTensors t;
  const auto u_type = p.u.scalar_type();
  t.acc_type = u_type == at::kDouble ? at::kDouble : at::kFloat;
  // Mixed u / delta dtypes run in the compute dtype (like the reference, which casts both).
  t.in_type = p.delta.scalar_type() == u_type ? u_type : t.acc_type;
  t.u = p.u.to(t.in_type).contiguous();
  t.delta = p.delta.to(t.in_type).contiguous();
  t.A = p.A.to(t.acc_type).contiguous();
  t.B = p.B.to(t.acc_type);
  t.C = p.C.to(t.acc_type);
  if (p.D) t.D = p.D->to(t.acc_type).contiguous();
  if (p.bias) t.bias = p.bias->to(t.acc_type).contiguous();
  return t;
}

// B and C are (b, G, n, L) here, any strides.
void fill_params(ScanParams& P, const Problem& p, const CpuTensors& t, bool softplus, int64_t chunk) {
  fill_scan_inputs(P, t.u, t.delta, t.A, t.B, t.C, t.D, t.bias, p.K, p.h, p.w, p.GB, p.GC, /*bc_pos_dim=*/3,
                   softplus, chunk);
}

template <typename In, typename Acc>
struct Types {
  using in_t = In;
  using acc_t = Acc;
};

// Calls fn(Types<in_t, acc_t>{}) for the CPU input type (acc_t: double for double, else float).
template <typename Fn>
void dispatch(at::ScalarType in_type, const Fn& fn) {
  switch (in_type) {
    case at::kFloat: return fn(Types<float, float>{});
    case at::kDouble: return fn(Types<double, double>{});
    case at::kHalf: return fn(Types<c10::Half, float>{});
    case at::kBFloat16: return fn(Types<c10::BFloat16, float>{});
    default: TORCH_CHECK_VALUE(false, "grainseg._C: unsupported dtype ", in_type);
  }
}

Tensor zeros_as(const Tensor& t) { return at::zeros(t.sizes(), t.options()); }

bool is_empty(const Problem& p) { return p.batch() == 0 || p.dim() == 0 || p.L() == 0; }

// Forward on the canonical problem: y (b, c, L) in u's dtype and ckpt.
std::tuple<Tensor, Tensor> forward_cpu(const Problem& p, bool softplus, int64_t chunk) {
  const auto acc = p.u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (is_empty(p))
    return {zeros_as(p.u), at::zeros(p.ckpt_shape(chunk), p.u.options().dtype(acc))};
  TORCH_CHECK_VALUE(p.u.device().is_cpu(), "grainseg._C: no kernels for device ", p.u.device(),
                    " (the extension was built without CUDA)");
  const CpuTensors t = prepare_cpu(p);
  Tensor y = at::empty(p.u.sizes(), p.u.options().dtype(t.in_type));
  Tensor ckpt = at::empty(p.ckpt_shape(chunk), p.u.options().dtype(t.acc_type));
  ScanParams P;
  fill_params(P, p, t, softplus, chunk);
  P.y = y.data_ptr();
  P.ckpt = ckpt.data_ptr();
  P.y_batch_stride = y.stride(0);
  P.y_dim_stride = y.stride(1);
  dispatch(t.in_type, [&](auto types) {
    using T = decltype(types);
    cpu::scan_fwd_cpu<typename T::in_t, typename T::acc_t>(P);
  });
  return {y.to(p.u.scalar_type()), ckpt};
}

// Backward on the canonical problem.  Gradients in the canonical shapes and the inputs' dtypes; dD /
// ddelta_bias (K, c), float32 when absent.
std::vector<Tensor> backward_cpu(const Problem& p, const Tensor& dy, bool softplus, const Tensor& ckpt,
                                 int64_t chunk) {
  const int64_t b = p.batch(), c = p.dim(), L = p.L(), n = p.n(), K = p.K;
  auto param_grad = [&](const OptTensor& x) {
    return at::zeros({K, c}, p.u.options().dtype(x ? x->scalar_type() : at::kFloat));
  };
  if (is_empty(p))
    return {zeros_as(p.u), zeros_as(p.delta), zeros_as(p.A), zeros_as(p.B), zeros_as(p.C), param_grad(p.D),
            param_grad(p.bias)};
  TORCH_CHECK_VALUE(p.u.device().is_cpu(), "grainseg._C: no kernels for device ", p.u.device(),
                    " (the extension was built without CUDA)");
  const CpuTensors t = prepare_cpu(p);
  const auto opts = p.u.options();
  Tensor dy_c = dy.reshape(p.u.sizes()).to(t.in_type).contiguous();
  Tensor ckpt_c = ckpt.contiguous();
  Tensor du = at::empty({b, c, L}, opts.dtype(t.in_type));
  Tensor ddelta = at::empty({b, K, c, L}, opts.dtype(t.in_type));
  Tensor dA = at::empty({K, c, n}, opts.dtype(t.acc_type));
  Tensor dB = at::empty({b, K * p.GB, n, L}, opts.dtype(t.acc_type));
  Tensor dC = at::empty({b, K * p.GC, n, L}, opts.dtype(t.acc_type));
  Tensor dD = at::empty({K, c}, opts.dtype(t.acc_type));
  Tensor dbias = at::empty({K, c}, opts.dtype(t.acc_type));
  ScanBwdParams P;
  fill_params(P, p, t, softplus, chunk);
  P.ckpt = ckpt_c.data_ptr();
  P.dy = dy_c.data_ptr();
  P.du = du.data_ptr();
  P.ddelta = ddelta.data_ptr();
  P.dA = dA.data_ptr();
  P.dB = dB.data_ptr();
  P.dC = dC.data_ptr();
  P.dD = dD.data_ptr();
  P.ddelta_bias = dbias.data_ptr();
  P.dy_batch_stride = dy_c.stride(0);
  P.dy_dim_stride = dy_c.stride(1);
  P.du_batch_stride = du.stride(0);
  P.du_dim_stride = du.stride(1);
  P.ddelta_batch_stride = ddelta.stride(0);
  P.ddelta_dir_stride = ddelta.stride(1);
  P.ddelta_dim_stride = ddelta.stride(2);
  P.dB_batch_stride = dB.stride(0);
  P.dB_group_stride = dB.stride(1);
  P.dB_dstate_stride = dB.stride(2);
  P.dB_pos_stride = dB.stride(3);
  P.dC_batch_stride = dC.stride(0);
  P.dC_group_stride = dC.stride(1);
  P.dC_dstate_stride = dC.stride(2);
  P.dC_pos_stride = dC.stride(3);
  dispatch(t.in_type, [&](auto types) {
    using T = decltype(types);
    cpu::scan_bwd_cpu<typename T::in_t, typename T::acc_t>(P);
  });
  auto as = [](const Tensor& g, const OptTensor& like) {
    return g.to(like ? like->scalar_type() : at::kFloat);
  };
  return {du.to(p.u.scalar_type()),
          ddelta.to(p.delta.scalar_type()),
          dA.to(p.A.scalar_type()),
          dB.to(p.B.scalar_type()),
          dC.to(p.C.scalar_type()),
          as(dD, p.D),
          as(dbias, p.bias)};
}

// --------------------------------------------------------------------------------- the four functions

std::tuple<Tensor, Tensor> ss2d_fwd(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                    const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                                    bool delta_softplus, int64_t chunk) {
  check_ss2d(u, delta, A, B, C, D, delta_bias, chunk);
  const Problem p = ss2d_problem(u, delta, A, B, C, D, delta_bias);
#ifdef GRAINSEG_WITH_CUDA
  if (u.is_cuda() && !is_empty(p)) return cuda_ops::ss2d_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk);
#endif
  auto [y, ckpt] = forward_cpu(p, delta_softplus, chunk);
  return {y.view(u.sizes()), ckpt};
}

std::vector<Tensor> ss2d_bwd(const Tensor& dy, const Tensor& u, const Tensor& delta, const Tensor& A,
                             const Tensor& B, const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                             bool delta_softplus, const Tensor& ckpt, int64_t chunk) {
  check_ss2d(u, delta, A, B, C, D, delta_bias, chunk);
  const Problem p = ss2d_problem(u, delta, A, B, C, D, delta_bias);
  check_grad_inputs("ss2d_scan", dy, u, ckpt, p.ckpt_shape(chunk));
#ifdef GRAINSEG_WITH_CUDA
  if (u.is_cuda() && !is_empty(p))
    return cuda_ops::ss2d_bwd(dy, u, delta, A, B, C, D, delta_bias, delta_softplus, ckpt, chunk);
#endif
  std::vector<Tensor> g = backward_cpu(p, dy, delta_softplus, ckpt, chunk);
  return {g[0].view(u.sizes()), g[1].view(delta.sizes()), g[2], g[3].view(B.sizes()),
          g[4].view(C.sizes()), g[5], g[6]};
}

std::tuple<Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                              const Tensor& B, const Tensor& C, const OptTensor& D,
                                              const OptTensor& delta_bias, bool delta_softplus, int64_t chunk) {
  check_selective(u, delta, A, B, C, D, delta_bias, chunk);
  const Problem p = selective_problem(u, delta, A, B, C, D, delta_bias);
#ifdef GRAINSEG_WITH_CUDA
  if (u.is_cuda() && !is_empty(p))
    return cuda_ops::selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk);
#endif
  auto [y, ckpt] = forward_cpu(p, delta_softplus, chunk);
  return {y, ckpt.squeeze(1)};
}

std::vector<Tensor> selective_scan_bwd(const Tensor& dy, const Tensor& u, const Tensor& delta, const Tensor& A,
                                       const Tensor& B, const Tensor& C, const OptTensor& D,
                                       const OptTensor& delta_bias, bool delta_softplus, const Tensor& ckpt,
                                       int64_t chunk) {
  check_selective(u, delta, A, B, C, D, delta_bias, chunk);
  const Problem p = selective_problem(u, delta, A, B, C, D, delta_bias);
  std::vector<int64_t> ckpt_shape = p.ckpt_shape(chunk);
  ckpt_shape.erase(ckpt_shape.begin() + 1);  // no direction dim in the 1-D op
  check_grad_inputs("selective_scan", dy, u, ckpt, ckpt_shape);
#ifdef GRAINSEG_WITH_CUDA
  if (u.is_cuda() && !is_empty(p))
    return cuda_ops::selective_scan_bwd(dy, u, delta, A, B, C, D, delta_bias, delta_softplus, ckpt, chunk);
#endif
  std::vector<Tensor> g = backward_cpu(p, dy, delta_softplus, ckpt.unsqueeze(1), chunk);
  return {g[0], g[1].squeeze(1), g[2].squeeze(0), g[3], g[4], g[5].squeeze(0), g[6].squeeze(0)};
}

bool has_cuda() {
#ifdef GRAINSEG_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace grainseg

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  using namespace pybind11::literals;
  m.doc() = "grainseg scan kernels: fused SS2D four-direction scan and mamba-compatible selective scan";
  m.def("has_cuda", &grainseg::has_cuda, "True when compiled with the CUDA kernels");
  m.def("cpu_capability", &grainseg::cpu::cpu_capability,
        "CPU kernel variant in use: avx512, avx2, baseline (dispatch build) or native (GRAINSEG_MARCH build)");
  m.def("set_cpu_capability", &grainseg::cpu::set_cpu_capability, "Switch the CPU kernel variant", "name"_a);
  m.def("compiled_cpu_capabilities", &grainseg::cpu::compiled_cpu_capabilities,
        "CPU kernel variants compiled in, best first");
  m.def("supported_cpu_capabilities", &grainseg::cpu::supported_cpu_capabilities,
        "The compiled CPU kernel variants this CPU runs, best first");
  m.def("ss2d_fwd", &grainseg::ss2d_fwd, "SS2D scan forward -> (y, ckpt)", "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a,
        "D"_a, "delta_bias"_a, "delta_softplus"_a, "chunk"_a, py::call_guard<py::gil_scoped_release>());
  m.def("ss2d_bwd", &grainseg::ss2d_bwd, "SS2D scan backward -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)", "dy"_a,
        "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a, "D"_a, "delta_bias"_a, "delta_softplus"_a, "ckpt"_a, "chunk"_a,
        py::call_guard<py::gil_scoped_release>());
  m.def("selective_scan_fwd", &grainseg::selective_scan_fwd, "selective scan forward -> (y, ckpt)", "u"_a,
        "delta"_a, "A"_a, "B"_a, "C"_a, "D"_a, "delta_bias"_a, "delta_softplus"_a, "chunk"_a,
        py::call_guard<py::gil_scoped_release>());
  m.def("selective_scan_bwd", &grainseg::selective_scan_bwd,
        "selective scan backward -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)", "dy"_a, "u"_a, "delta"_a, "A"_a,
        "B"_a, "C"_a, "D"_a, "delta_bias"_a, "delta_softplus"_a, "ckpt"_a, "chunk"_a,
        py::call_guard<py::gil_scoped_release>());
}
