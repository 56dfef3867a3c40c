// pybind module grainseg._C: the scan ops' four functions (scan_ops.h: validation, the canonical problem,
// results in the op's shapes) over the kernels of the tensors' device, the CPU kernels' dtype dispatch,
// and the kernels' limits.
//
// The only file that sees both torch and the CPU kernels.  Both ops are one canonical problem
// (scan_params_torch.h), run by the same templated CPU kernels (cpu/scan_cpu_kernel.h); CUDA tensors go
// to the CUDA side (scan_cuda_api.h) when compiled with -DGRAINSEG_WITH_CUDA.
#include <torch/extension.h>

#include <tuple>
#include <vector>

#include "cpu/scan_cpu.h"
#include "cpu/scan_cpu_isa.h"
#include "scan_cuda_api.h"
#include "scan_ops.h"
#include "scan_params.h"
#include "scan_params_torch.h"

namespace grainseg {
namespace {

using at::Tensor;

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

// The problem as the CPU kernels read it: u / delta in one input type (u's, or the compute type when
// delta's differs, like the reference, which casts both), everything else in the compute type.  B and C
// keep their strides: the kernel relays them into its step rows itself (step_order_rows).
ScanProblem cast_for_cpu(const ScanProblem& p) {
  const auto u_type = p.u.scalar_type();
  const auto in_type = p.delta.scalar_type() == u_type ? u_type : p.acc_type();
  return p.cast(in_type, p.acc_type(), /*bc_contiguous=*/false);
}

std::tuple<Tensor, Tensor> forward_cpu(const ScanProblem& p, bool softplus, int64_t chunk) {
  const ScanProblem t = cast_for_cpu(p);
  ScanParams P;
  const ScanForward out = prepare_forward(P, t, softplus, chunk);
  dispatch(t.u.scalar_type(), [&](auto types) {
    using T = decltype(types);
    cpu::scan_fwd_cpu<typename T::in_t, typename T::acc_t>(P);
  });
  return forward_result(p, out);
}

std::vector<Tensor> backward_cpu(const ScanProblem& p, const Tensor& dy, bool softplus, const Tensor& ckpt,
                                 int64_t chunk) {
  const ScanProblem t = cast_for_cpu(p);
  ScanBwdParams P;
  const ScanBackward g = prepare_backward(P, t, dy, ckpt, softplus, chunk);
  dispatch(t.u.scalar_type(), [&](auto types) {
    using T = decltype(types);
    cpu::scan_bwd_cpu<typename T::in_t, typename T::acc_t>(P);
  });
  return backward_result(p, g);
}

void check_cpu(const ScanProblem& p) {
  TORCH_CHECK_VALUE(p.u.device().is_cpu(), "grainseg._C: no kernels for device ", p.u.device(),
                    " (the extension was built without CUDA)");
}

// The kernels of the problem's device (scan_ops.h's Impl).
struct DeviceKernels {
  static std::tuple<Tensor, Tensor> forward(const ScanProblem& p, bool softplus, int64_t chunk) {
#ifdef GRAINSEG_WITH_CUDA
    if (p.u.is_cuda()) return cuda_ops::forward(p, softplus, chunk);
#endif
    check_cpu(p);
    return forward_cpu(p, softplus, chunk);
  }

  static std::vector<Tensor> backward(const ScanProblem& p, const Tensor& dy, bool softplus, const Tensor& ckpt,
                                      int64_t chunk) {
#ifdef GRAINSEG_WITH_CUDA
    if (p.u.is_cuda()) return cuda_ops::backward(p, dy, softplus, ckpt, chunk);
#endif
    check_cpu(p);
    return backward_cpu(p, dy, softplus, ckpt, chunk);
  }
};

using Ops = scan_ops::ScanOps<DeviceKernels>;

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
  m.attr("max_d_state") = grainseg::kMaxDState;
  m.attr("cpu_checkpoint_chunk") = grainseg::kCpuCheckpointChunk;
  m.attr("cuda_checkpoint_chunk") = grainseg::kCudaCheckpointChunk;
  m.def("cpu_capability", &grainseg::cpu::cpu_capability,
        "CPU kernel variant in use: avx512, avx2, baseline (dispatch build) or native (GRAINSEG_MARCH build)");
  m.def("set_cpu_capability", &grainseg::cpu::set_cpu_capability, "Switch the CPU kernel variant", "name"_a);
  m.def("compiled_cpu_capabilities", &grainseg::cpu::compiled_cpu_capabilities,
        "CPU kernel variants compiled in, best first");
  m.def("supported_cpu_capabilities", &grainseg::cpu::supported_cpu_capabilities,
        "The compiled CPU kernel variants this CPU runs, best first");
  m.def("ss2d_fwd", &grainseg::Ops::ss2d_fwd, "SS2D scan forward -> (y, ckpt)", "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a,
        "D"_a, "delta_bias"_a, "delta_softplus"_a, "chunk"_a, py::call_guard<py::gil_scoped_release>());
  m.def("ss2d_bwd", &grainseg::Ops::ss2d_bwd, "SS2D scan backward -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)", "dy"_a,
        "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a, "D"_a, "delta_bias"_a, "delta_softplus"_a, "ckpt"_a, "chunk"_a,
        py::call_guard<py::gil_scoped_release>());
  m.def("selective_scan_fwd", &grainseg::Ops::selective_scan_fwd, "selective scan forward -> (y, ckpt)", "u"_a,
        "delta"_a, "A"_a, "B"_a, "C"_a, "D"_a, "delta_bias"_a, "delta_softplus"_a, "chunk"_a,
        py::call_guard<py::gil_scoped_release>());
  m.def("selective_scan_bwd", &grainseg::Ops::selective_scan_bwd,
        "selective scan backward -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)", "dy"_a, "u"_a, "delta"_a, "A"_a,
        "B"_a, "C"_a, "D"_a, "delta_bias"_a, "delta_softplus"_a, "ckpt"_a, "chunk"_a,
        py::call_guard<py::gil_scoped_release>());
}
