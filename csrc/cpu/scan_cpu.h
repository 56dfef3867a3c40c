// Entry points of the CPU scan kernels, instantiated in scan_cpu.cpp (forwarding to the kernel variant in
// use, scan_cpu_isa.h) for
// in_t in {float, double, c10::Half, c10::BFloat16} with acc_t = double for double inputs, float otherwise.
// No torch headers: the binding includes this and passes a filled ScanParams / ScanBwdParams.
#pragma once

#include "scan_params.h"

namespace grainseg {
namespace cpu {

// y and ckpt (see scan_params.h).  B and C must be n-innermost (B_dstate_stride == 1).
template <typename in_t, typename acc_t>
void scan_fwd_cpu(const ScanParams& params);

// du, ddelta, dA, dB, dC, dD, ddelta_bias from dy, the inputs and the forward's ckpt.
template <typename in_t, typename acc_t>
void scan_bwd_cpu(const ScanBwdParams& params);

}  // namespace cpu
}  // namespace grainseg
