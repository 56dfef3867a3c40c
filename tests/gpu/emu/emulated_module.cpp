// grainseg's CUDA binding and kernels (csrc/cuda, csrc/ss2d/*.cu, csrc/selective_scan/*.cu) built for the
// host emulation of cuda_emulation.h: the same source, run on CPU tensors, so tests can check the
// kernels' logic on a machine without a GPU.  The four functions are grainseg._C's (csrc/scan_ops.h:
// validation, canonical problem, result shapes) over the CUDA side only.  Built by tests/gpu/cuda_emulation.py.
#include <torch/extension.h>

#include "cuda/scan_binding_cuda.cpp"
#include "scan_ops.h"
#include "selective_scan/selective_scan_bwd.cu"
#include "selective_scan/selective_scan_fwd.cu"
#include "ss2d/ss2d_bwd.cu"
#include "ss2d/ss2d_fwd.cu"

// The binding reports launch errors with cudaGetErrorString; the emulation does not link the CUDA runtime.
const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : "CUDA error (emulated)";
}

// Every problem goes to the CUDA side, whatever the tensors' device (CPU here).
struct EmulatedCudaKernels {
  static std::tuple<at::Tensor, at::Tensor> forward(const grainseg::ScanProblem& p, bool softplus, int64_t chunk) {
    return grainseg::cuda_ops::forward(p, softplus, chunk);
  }
  static std::vector<at::Tensor> backward(const grainseg::ScanProblem& p, const at::Tensor& dy, bool softplus,
                                          const at::Tensor& ckpt, int64_t chunk) {
    return grainseg::cuda_ops::backward(p, dy, softplus, ckpt, chunk);
  }
};
using EmulatedOps = grainseg::scan_ops::ScanOps<EmulatedCudaKernels>;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "grainseg CUDA scan kernels under host emulation (tests only)";
  m.def("ss2d_fwd", &EmulatedOps::ss2d_fwd);
  m.def("ss2d_bwd", &EmulatedOps::ss2d_bwd);
  m.def("selective_scan_fwd", &EmulatedOps::selective_scan_fwd);
  m.def("selective_scan_bwd", &EmulatedOps::selective_scan_bwd);
  m.def("set_schedule_seed", [](uint64_t seed) { emu::g_seed = seed; },
        "Seed of the pseudo-random order in which the emulated threads run between barriers");
}
