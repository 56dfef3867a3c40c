// Parameters of the selective-scan kernels (CPU and CUDA): plain pointers, sizes and strides.
//
// No torch headers here on purpose: the .cu kernels and the CPU kernels both read this struct, and the
// .cu files must compile with nvcc alone.  The torch side fills it from the canonical problem
// (csrc/scan_params_torch.h), the same way for both devices.
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

// Host and device code may both call the functions marked so (the CUDA kernels and the CPU kernels).
#if defined(__CUDACC__)
#define GRAINSEG_HOST_DEVICE __host__ __device__
#else
#define GRAINSEG_HOST_DEVICE
#endif

// The kernels' limits, exported by grainseg._C (max_d_state, cpu_checkpoint_chunk, cuda_checkpoint_chunk)
// for grainseg/ops and the tests.
constexpr int kNumDirections = 4;           // SS2D directions
constexpr int kMaxDState = 256;             // largest supported state size n
constexpr int kCpuCheckpointChunk = 64;     // steps per checkpoint the ops ask of the CPU kernels (any >= 1 runs)
constexpr int kCudaCheckpointChunk = 2048;  // the CUDA kernels' largest tile: their only checkpoint chunk

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
  index_t chunk = kCpuCheckpointChunk;  // steps per checkpoint
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
// n_dirs == 1 (selective_scan: height 1).
GRAINSEG_HOST_DEVICE inline index_t direction_position(int k, index_t t, index_t height, index_t width) {
  const index_t L = height * width;
  const index_t s = (k >= 2) ? (L - 1 - t) : t;  // directions 2, 3 run backwards
  if ((k & 1) == 0) return s;                    // row-major
  const index_t i = s % height, j = s / height;  // column-major: i varies fastest
  return i * width + j;
}

// Where one (batch b, direction k, channel d) sequence lives in the tensors of a ScanParams (and, from a
// ScanBwdParams, of the gradients too): the one place the kernels of both devices compute it - the CPU
// kernels' lanes (which read B and C from their own step rows instead, at groups gB and gC) and the CUDA
// kernels' blocks.  Element types: in_t for u, delta, y, dy, du, ddelta; acc_t for A, D, delta_bias, ckpt;
// bc_t for B and C (the CPU kernels get them in acc_t, the CUDA kernels in in_t).
template <typename in_t, typename acc_t, typename bc_t>
struct SequencePtrs {
  const in_t* u;      // u[b, d, :], spatial layout (position p at offset p)
  const in_t* delta;  // delta[b, k, d, :]
  const acc_t* A;     // A[k, d, :]
  index_t gB, gC;     // groups of B and C: k * n_groups + d / (dim / n_groups)
  const bc_t* B;      // B[b, gB]: element (s, p) at s * B_dstate_stride + p * B_pos_stride
  const bc_t* C;      // C[b, gC], likewise
  acc_t D, bias;      // D[k, d], delta_bias[k, d] (0 when absent)
  in_t* y;            // y[b, d, :], the sum over the directions
  acc_t* ckpt;        // ckpt[b, k, d, :, :]: (n_chunks, dstate)
  // backward only (null from a forward ScanParams)
  const in_t* dy = nullptr;  // dy[b, d, :]
  in_t* du = nullptr;        // du[b, d, :]
  in_t* ddelta = nullptr;    // ddelta[b, k, d, :]
};

// base + offset elements of T, or null for a null base (a field the struct leaves unset, such as y in the
// backward: no arithmetic on null pointers).
template <typename T, typename V>
GRAINSEG_HOST_DEVICE inline T* offset_ptr(V* base, index_t offset) {
  return base ? static_cast<T*>(base) + offset : nullptr;
}

template <typename in_t, typename acc_t, typename bc_t>
GRAINSEG_HOST_DEVICE inline SequencePtrs<in_t, acc_t, bc_t> sequence_ptrs(const ScanParams& P, index_t b, index_t k,
                                                                         index_t d) {
  SequencePtrs<in_t, acc_t, bc_t> s;
  s.u = offset_ptr<const in_t>(P.u, b * P.u_batch_stride + d * P.u_dim_stride);
  s.delta = offset_ptr<const in_t>(P.delta, b * P.delta_batch_stride + k * P.delta_dir_stride + d * P.delta_dim_stride);
  s.A = offset_ptr<const acc_t>(P.A, k * P.A_dir_stride + d * P.A_dim_stride);
  s.gB = k * P.n_groups_B + d / (P.dim / P.n_groups_B);
  s.gC = k * P.n_groups_C + d / (P.dim / P.n_groups_C);
  s.B = offset_ptr<const bc_t>(P.B, b * P.B_batch_stride + s.gB * P.B_group_stride);
  s.C = offset_ptr<const bc_t>(P.C, b * P.C_batch_stride + s.gC * P.C_group_stride);
  s.D = P.D ? static_cast<const acc_t*>(P.D)[k * P.D_dir_stride + d] : acc_t(0);
  s.bias = P.delta_bias ? static_cast<const acc_t*>(P.delta_bias)[k * P.delta_bias_dir_stride + d] : acc_t(0);
  s.y = offset_ptr<in_t>(P.y, b * P.y_batch_stride + d * P.y_dim_stride);
  s.ckpt = offset_ptr<acc_t>(P.ckpt, ((b * P.n_dirs + k) * P.dim + d) * P.n_chunks * P.dstate);
  return s;
}

template <typename in_t, typename acc_t, typename bc_t>
GRAINSEG_HOST_DEVICE inline SequencePtrs<in_t, acc_t, bc_t> sequence_ptrs(const ScanBwdParams& P, index_t b,
                                                                         index_t k, index_t d) {
  SequencePtrs<in_t, acc_t, bc_t> s = sequence_ptrs<in_t, acc_t, bc_t>(static_cast<const ScanParams&>(P), b, k, d);
  s.dy = offset_ptr<const in_t>(P.dy, b * P.dy_batch_stride + d * P.dy_dim_stride);
  s.du = offset_ptr<in_t>(P.du, b * P.du_batch_stride + d * P.du_dim_stride);
  s.ddelta = offset_ptr<in_t>(P.ddelta, b * P.ddelta_batch_stride + k * P.ddelta_dir_stride + d * P.ddelta_dim_stride);
  return s;
}

}  // namespace grainseg
