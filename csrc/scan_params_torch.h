// Torch-side helper shared by the CPU binding (bindings.cpp) and the CUDA binding (cuda/*_cuda.cpp):
// fills ScanParams' sizes, pointers and strides from the canonical tensors.  Never included by .cu files.
#pragma once

#include <ATen/ATen.h>

#include "scan_params.h"

namespace grainseg {

// u (b, c, L); delta (b, K, c, L); A (K, c, n); B / C (b, K*G, ., .) whose dim `bc_pos_dim` (2 or 3) runs
// over positions and the other of dims 2, 3 over the state; D / bias (K, c) or undefined when absent.
inline void fill_scan_inputs(ScanParams& P, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                             const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                             const at::Tensor& bias, int64_t K, int64_t h, int64_t w, int64_t GB, int64_t GC,
                             int bc_pos_dim, bool softplus, int64_t chunk) {
  const int bc_dstate_dim = bc_pos_dim == 2 ? 3 : 2;
  P.batch = u.size(0);
  P.dim = u.size(1);
  P.n_dirs = K;
  P.height = h;
  P.width = w;
  P.seqlen = u.size(2);
  P.dstate = A.size(2);
  P.n_groups_B = GB;
  P.n_groups_C = GC;
  P.chunk = chunk;
  P.n_chunks = (P.seqlen + chunk - 1) / chunk;
  P.delta_softplus = softplus;
  P.u = u.data_ptr();
  P.delta = delta.data_ptr();
  P.A = A.data_ptr();
  P.B = B.data_ptr();
  P.C = C.data_ptr();
  P.D = D.defined() ? D.data_ptr() : nullptr;
  P.delta_bias = bias.defined() ? bias.data_ptr() : nullptr;
  P.u_batch_stride = u.stride(0);
  P.u_dim_stride = u.stride(1);
  P.delta_batch_stride = delta.stride(0);
  P.delta_dir_stride = delta.stride(1);
  P.delta_dim_stride = delta.stride(2);
  P.A_dir_stride = A.stride(0);
  P.A_dim_stride = A.stride(1);
  P.B_batch_stride = B.stride(0);
  P.B_group_stride = B.stride(1);
  P.B_pos_stride = B.stride(bc_pos_dim);
  P.B_dstate_stride = B.stride(bc_dstate_dim);
  P.C_batch_stride = C.stride(0);
  P.C_group_stride = C.stride(1);
  P.C_pos_stride = C.stride(bc_pos_dim);
  P.C_dstate_stride = C.stride(bc_dstate_dim);
  P.D_dir_stride = D.defined() ? D.stride(0) : 0;
  P.delta_bias_dir_stride = bias.defined() ? bias.stride(0) : 0;
}

}  // namespace grainseg
