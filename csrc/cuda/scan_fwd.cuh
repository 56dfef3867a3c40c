// Forward kernel of the CUDA scans (SS2D with kNDirs = 4, the 1-D selective scan with kNDirs = 1).
//
// One block per (batch b, channel d).  For each direction k in turn it scans the sequence in tiles of
// kNThreads * kNItems steps, reading u, delta, B, C in place through direction k's index order, and
// carries the state x (dstate values, in shared memory) from tile to tile.  y is merged over the
// directions by the same block in the fixed order 0, 1, 2, 3 (deterministic, written once per
// direction into an fp32 accumulator, converted on the last direction).  After each tile the carried
// state is saved to ckpt (tile == checkpoint chunk, see kMaxTile).
#pragma once

#include "cuda/scan_common.cuh"
#include "cuda/scan_cuda.cuh"

namespace grainseg {
namespace cuda {

// Shared memory of the forward kernel: two stage buffers and the carried state.
template <int kNThreads, int kNItems, typename acc_t>
inline size_t fwd_smem_bytes(int dstate) {
  return (2 * Tile<kNThreads, kNItems>::kPaddedSize + dstate) * sizeof(acc_t);
}

template <int kNThreads, int kNItems, int kNDirs, typename input_t>
__global__ void __launch_bounds__(kNThreads) scan_fwd_kernel(const ScanCudaParams p) {
  using acc_t = typename AccType<input_t>::type;
  using TileT = Tile<kNThreads, kNItems>;
  using Scan = BlockRecurrenceScan<kNThreads, /*kReverse=*/false, acc_t>;
  constexpr int kTile = TileT::kSize;

  acc_t* stage0 = dynamic_smem<acc_t>();
  acc_t* stage1 = stage0 + TileT::kPaddedSize;
  acc_t* carry = stage1 + TileT::kPaddedSize;  // [dstate]: state entering the next tile
  __shared__ typename Scan::Storage scan_storage;

  const int L = static_cast<int>(p.seqlen), h = static_cast<int>(p.height), w = static_cast<int>(p.width);
  const int n = static_cast<int>(p.dstate), dim = static_cast<int>(p.dim);
  const int b = blockIdx.x / dim, d = blockIdx.x % dim;
  const int n_tiles = (L + kTile - 1) / kTile;

  acc_t* y_acc = kNDirs > 1 ? static_cast<acc_t*>(p.y_acc) + static_cast<index_t>(blockIdx.x) * L : nullptr;

  for (int k = 0; k < kNDirs; ++k) {
    const auto seq = sequence_ptrs<input_t, acc_t, input_t>(p, b, k, d);

    // Visible to every thread after the first barrier of the tile loads below.
    for (int s = threadIdx.x; s < n; s += kNThreads) carry[s] = acc_t(0);

    for (int tile = 0; tile < n_tiles; ++tile) {
      const int t0 = tile * kTile;
      acc_t u_v[kNItems], dt_v[kNItems];
      TileT::load2(
          stage0, stage1, t0, L, [&](int t) { return to_acc(seq.u[seq_to_pos(k, t, h, w, L)]); },
          [&](int t) { return to_acc(seq.delta[seq_to_pos(k, t, h, w, L)]); }, u_v, dt_v);

      acc_t dtu_v[kNItems], y_v[kNItems];
#pragma unroll
      for (int i = 0; i < kNItems; ++i) {
        const bool valid = t0 + threadIdx.x * kNItems + i < L;
        acc_t dt = dt_v[i] + seq.bias;
        if (p.delta_softplus) dt = softplus(dt);
        // Masked tail: dt = 0 makes the step the identity (exp(0) = 1, no input), whatever the bias.
        dt_v[i] = valid ? dt : acc_t(0);
        dtu_v[i] = dt_v[i] * u_v[i];
        y_v[i] = seq.D * u_v[i];
      }

      for (int s = 0; s < n; ++s) {
        const acc_t A_s = seq.A[s];
        acc_t B_v[kNItems], C_v[kNItems];
        TileT::load2(
            stage0, stage1, t0, L,
            [&](int t) { return to_acc(seq.B[s * p.B_dstate_stride + seq_to_pos(k, t, h, w, L) * p.B_pos_stride]); },
            [&](int t) { return to_acc(seq.C[s * p.C_dstate_stride + seq_to_pos(k, t, h, w, L) * p.C_pos_stride]); },
            B_v, C_v);

        acc_t a_v[kNItems], agg_a = acc_t(1), agg_b = acc_t(0);
#pragma unroll
        for (int i = 0; i < kNItems; ++i) {
          a_v[i] = exp_acc(dt_v[i] * A_s);
          B_v[i] *= dtu_v[i];  // now the additive term dt * B * u of step i
          agg_b = a_v[i] * agg_b + B_v[i];
          agg_a = a_v[i] * agg_a;
        }
        acc_t carry_out;
        acc_t x = Scan::run(scan_storage, agg_a, agg_b, carry[s], carry_out);
        if (threadIdx.x == 0) {  // every thread read carry[s] before Scan::run's first barrier
          carry[s] = carry_out;
          seq.ckpt[static_cast<index_t>(tile) * n + s] = carry_out;
        }
#pragma unroll
        for (int i = 0; i < kNItems; ++i) {
          x = a_v[i] * x + B_v[i];
          y_v[i] += x * C_v[i];
        }
      }

      // Merge the directions: y_acc = y_0, += y_1, += y_2, then y = y_acc + y_3 (fixed order).
      TileT::store(stage0, t0, L, y_v, [&](int t, acc_t v) {
        merge_direction<kNDirs>(k, seq.y, y_acc, seq_to_pos(k, t, h, w, L), v);
      });
    }
  }
}

// Forward for the op with kNDirs directions (4: SS2D, 1: selective scan), one block per (batch, channel).
template <int kNDirs, typename input_t>
cudaError_t launch_scan_fwd(const ScanCudaParams& p, cudaStream_t stream) {
  using acc_t = typename AccType<input_t>::type;
  if (p.batch == 0 || p.dim == 0 || p.seqlen == 0) return cudaSuccess;
  return dispatch_tile_config</*kBackward=*/false>(p.seqlen, [&](auto cfg) {
    using Cfg = decltype(cfg);
    return launch_kernel(scan_fwd_kernel<Cfg::kNThreads, Cfg::kNItems, kNDirs, input_t>,
                         static_cast<unsigned>(p.batch * p.dim), Cfg::kNThreads,
                         fwd_smem_bytes<Cfg::kNThreads, Cfg::kNItems, acc_t>(static_cast<int>(p.dstate)), stream, p);
  });
}

}  // namespace cuda
}  // namespace grainseg
