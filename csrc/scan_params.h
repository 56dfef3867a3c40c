// Parameters of the selective-scan kernels (CPU and CUDA): plain pointers, sizes and strides.
//
// No torch headers here on purpose: the .cu kernels and the CPU kernels both read this struct, and the
// .cu files must compile with nvcc alone.  The torch binding (csrc/bindings.cpp) fills it.
//
// One struct describes both ops:
//   * ss2d_scan       : n_dirs = 4, the sequence is the h x w grid visited in direction k's order
//                       (0 row-major, 1 column-major, 2 reverse row-major, 3 reverse column-major),
//                       y[b, d, position] = sum over the 4 directions.
//   * selective_scan  : n_dirs = 1, height = 1, width = seqlen = L, identity order.
// For every (batch b, direction k, channel d) the kernels run, over steps t = 0..seqlen-1 at position
// p = order_k(t):
//     dt  = delta[b,k,d,p] + delta_bias[k,d];  dt = softplus(dt) if delta_softplus
//     x_n = exp(dt * A[k,d,n]) * x_n + dt * B[b,g,n,p] * u[b,d,p]        (x starts at 0)
//     y[b,d,p] += sum_n x_n * C[b,g',n,p] + D[k,d] * u[b,d,p]
// with the B group g = k * n_groups_B + d / (dim / n_groups_B) (C likewise with n_groups_C).
//
// Layout rules the binding guarantees:
//   * the spatial / sequence dims of u, delta, y, dy, du, ddelta are contiguous: position p = i * width + j
//     is at offset p from the (batch, dir, channel) base;
//   * A is (n_dirs, dim, dstate) with dstate contiguous; D and delta_bias are (n_dirs, dim) contiguous;
//   * B, C, dB, dC: general strides over (batch, group, dstate, position);
//   * ckpt is contiguous (batch, n_dirs, dim, n_chunks, dstate): the state x after the last step of
//     every chunk of `chunk` steps (in direction order);
//   * dA (n_dirs, dim, dstate), dD and ddelta_bias (n_dirs, dim) are contiguous.
// Element types are chosen by the kernel template that reads the struct (the CPU binding passes u, delta,
// y, dy, du, ddelta in the input dtype and everything else in the compute dtype: fp32, fp64 for fp64).
#pragma once

#include <cstdint>

namespace grainseg {

using index_t = int64_t;

constexpr int kNumDirections = 4;  // SS2D directions
constexpr int kMaxDState = 256;    // largest supported state size n

struct ScanParams {
  // ---- sizes
  index_t batch = 0;
  index_t dim = 0;       // channels per direction (c for ss2d, dim for selective_scan)
  index_t n_dirs = 1;    // 4 (ss2d) or 1 (selective_scan)
  index_t height = 1;    // ss2d grid height (1 for selective_scan)
  index_t width = 0;     // ss2d grid width (L for selective_scan)
  index_t seqlen = 0;    // height * width
  index_t dstate = 0;    // n
  index_t n_groups_B = 1;  // B groups per direction; channel d uses group d / (dim / n_groups_B)
  index_t n_groups_C = 1;
  index_t chunk = 64;    // steps per checkpoint
  index_t n_chunks = 0;  // ceil(seqlen / chunk)
  bool delta_softplus = false;

  // ---- inputs (D and delta_bias may be null: treated as 0)
  const void* u = nullptr;
  const void* delta = nullptr;
  const void* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const void* D = nullptr;
  const void* delta_bias = nullptr;

  // ---- outputs of the forward
  void* y = nullptr;     // (batch, dim, seqlen)
  void* ckpt = nullptr;  // (batch, n_dirs, dim, n_chunks, dstate), contiguous

  // ---- strides in elements (direction strides are 0 when n_dirs == 1)
  index_t u_batch_stride = 0, u_dim_stride = 0;
  index_t delta_batch_stride = 0, delta_dir_stride = 0, delta_dim_stride = 0;
  index_t A_dir_stride = 0, A_dim_stride = 0;
  index_t B_batch_stride = 0, B_group_stride = 0, B_dstate_stride = 0, B_pos_stride = 0;
  index_t C_batch_stride = 0, C_group_stride = 0, C_dstate_stride = 0, C_pos_stride = 0;
  index_t D_dir_stride = 0, delta_bias_dir_stride = 0;
  index_t y_batch_stride = 0, y_dim_stride = 0;
};

// Backward: the forward's fields (inputs and ckpt) plus the cotangent and every gradient.
struct ScanBwdParams : ScanParams {
  const void* dy = nullptr;  // (batch, dim, seqlen) like y
  void* du = nullptr;        // like u
  void* ddelta = nullptr;    // like delta
  void* dA = nullptr;        // (n_dirs, dim, dstate), contiguous
  void* dB = nullptr;        // strides below
  void* dC = nullptr;
  void* dD = nullptr;           // (n_dirs, dim), contiguous; always written (even when D is null)
  void* ddelta_bias = nullptr;  // (n_dirs, dim), contiguous; always written

  index_t dy_batch_stride = 0, dy_dim_stride = 0;
  index_t du_batch_stride = 0, du_dim_stride = 0;
  index_t ddelta_batch_stride = 0, ddelta_dir_stride = 0, ddelta_dim_stride = 0;
  index_t dB_batch_stride = 0, dB_group_stride = 0, dB_dstate_stride = 0, dB_pos_stride = 0;
  index_t dC_batch_stride = 0, dC_group_stride = 0, dC_dstate_stride = 0, dC_pos_stride = 0;
};

// Position visited at step t by direction k on an h x w grid (row-major offsets).  The identity for
// n_dirs == 1 (selective_scan: height 1).  Host and device code may both call it.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline index_t direction_position(int k, index_t t, index_t height, index_t width) {
  const index_t L = height * width;
  const index_t s = (k >= 2) ? (L - 1 - t) : t;  // directions 2, 3 run backwards
  if ((k & 1) == 0) return s;                    // row-major
  const index_t i = s % height, j = s / height;  // column-major: i varies fastest
  return i * width + j;
}

}  // namespace grainseg
