// Backward kernel of the CUDA scans, plus the fixed-order reduction of its partial sums.
//
// One block per (batch b, slab of chan_per_block consecutive channels); for each channel d of the slab
// and each direction k it walks the tiles from last to first.  Per tile and state n:
//   1. recompute the forward states x_t of the tile from the saved checkpoint (forward block scan);
//   2. run the adjoint backwards (reverse block scan), carrying h_t = a_t * dL/dx_t between tiles:
//        g_t = dL/dx_t = dy_t C_t + h_{t+1},   h_t = a_t * g_t,   a_t = exp(dt_t A);
//   3. accumulate  dC_t += dy_t x_t,  dB_t += g_t dt_t u_t,  du_t += g_t dt_t B_t,
//        ddt_t += g_t (A (x_t - b_t) + u_t B_t),  dA += g_t dt_t (x_t - b_t)   (b_t = dt_t B_t u_t,
//        so x_t - b_t = a_t x_{t-1} needs no division).
// dB / dC sum over the channels of a group: each block adds its channels in order into its own slab
// of dB_part / dC_part and a second kernel sums the slabs in order.  dA, dD, ddelta_bias sum over the
// batch the same way (per-block partials, fixed-order sum).  No atomics: results are bitwise
// reproducible for the same inputs and launch configuration.
#pragma once

#include "cuda/scan_common.cuh"
#include "cuda/scan_cuda.cuh"

namespace grainseg {
namespace cuda {

// Shared memory of the backward kernel: two stage buffers, the carried adjoint and per-warp dA sums.
template <int kNThreads, int kNItems, typename acc_t>
inline size_t bwd_smem_bytes(int dstate) {
  return (2 * Tile<kNThreads, kNItems>::kPaddedSize + dstate * (1 + kNThreads / kWarpSize)) * sizeof(acc_t);
}

template <int kNThreads, int kNItems, int kNDirs, typename input_t>
__global__ void __launch_bounds__(kNThreads) scan_bwd_kernel(const ScanCudaParams p) {
  using acc_t = typename AccType<input_t>::type;
  using TileT = Tile<kNThreads, kNItems>;
  using ScanFwd = BlockRecurrenceScan<kNThreads, /*kReverse=*/false, acc_t>;
  using ScanRev = BlockRecurrenceScan<kNThreads, /*kReverse=*/true, acc_t>;
  constexpr int kTile = TileT::kSize;
  constexpr int kNWarps = kNThreads / kWarpSize;

  const int n = static_cast<int>(p.dstate);
  acc_t* stage0 = dynamic_smem<acc_t>();
  acc_t* stage1 = stage0 + TileT::kPaddedSize;
  acc_t* rev_carry = stage1 + TileT::kPaddedSize;  // [dstate]: h at the start of the tile done last
  acc_t* dA_warp = rev_carry + n;                   // [kNWarps][dstate]: per-warp dA sums
  __shared__ RecurrenceScanStorage<kNThreads, acc_t> scan_storage;  // used by both scans in turn
  __shared__ acc_t red[kNWarps];

  const int L = static_cast<int>(p.seqlen), h = static_cast<int>(p.height), w = static_cast<int>(p.width);
  const int dim = static_cast<int>(p.dim);
  const int n_slabs = static_cast<int>(p.n_slabs), cpb = static_cast<int>(p.chan_per_block);
  const int b = blockIdx.x / n_slabs, slab = blockIdx.x % n_slabs;
  const int n_tiles = (L + kTile - 1) / kTile;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;

  for (int ci = 0; ci < cpb; ++ci) {
    const int d = slab * cpb + ci;
    acc_t* du_acc =
        kNDirs > 1 ? static_cast<acc_t*>(p.du_acc) + (static_cast<index_t>(b) * dim + d) * L : nullptr;

    for (int k = 0; k < kNDirs; ++k) {
      const auto seq = sequence_ptrs<input_t, acc_t, input_t>(p, b, k, d);
      const index_t part_base = (static_cast<index_t>(b) * kNDirs + k) * n_slabs + slab;
      acc_t* dB_part = static_cast<acc_t*>(p.dB_part) + part_base * n * L;
      acc_t* dC_part = static_cast<acc_t*>(p.dC_part) + part_base * n * L;
      const bool first_in_slab = ci == 0;

      __syncthreads();  // the previous (channel, direction) finished reading rev_carry and dA_warp
      for (int s = threadIdx.x; s < n; s += kNThreads) rev_carry[s] = acc_t(0);
      for (int i = threadIdx.x; i < kNWarps * n; i += kNThreads) dA_warp[i] = acc_t(0);
      acc_t dD_sum = acc_t(0), dbias_sum = acc_t(0);

      for (int tile = n_tiles - 1; tile >= 0; --tile) {
        const int t0 = tile * kTile;
        acc_t u_v[kNItems], dt_v[kNItems], dy_v[kNItems];
        TileT::load2(
            stage0, stage1, t0, L, [&](int t) { return to_acc(seq.u[seq_to_pos(k, t, h, w, L)]); },
            [&](int t) { return to_acc(seq.delta[seq_to_pos(k, t, h, w, L)]); }, u_v, dt_v);
        TileT::load(stage0, t0, L, acc_t(0), [&](int t) { return to_acc(seq.dy[seq_to_pos(k, t, h, w, L)]); },
                    dy_v);

        acc_t dtu_v[kNItems], dsoft_v[kNItems], du_v[kNItems], ddt_v[kNItems];
#pragma unroll
        for (int i = 0; i < kNItems; ++i) {
          const bool valid = t0 + threadIdx.x * kNItems + i < L;
          const acc_t raw = dt_v[i] + seq.bias;
          dsoft_v[i] = p.delta_softplus ? sigmoid(raw) : acc_t(1);
          const acc_t dt = p.delta_softplus ? softplus(raw) : raw;
          dt_v[i] = valid ? dt : acc_t(0);  // masked tail: identity step, no gradient
          dtu_v[i] = dt_v[i] * u_v[i];
          du_v[i] = seq.D * dy_v[i];
          ddt_v[i] = acc_t(0);
          dD_sum += dy_v[i] * u_v[i];  // zero beyond L (u and dy load as 0 there)
        }

        for (int s = 0; s < n; ++s) {
          const acc_t A_s = seq.A[s];
          acc_t B_v[kNItems], C_v[kNItems];
          TileT::load2(
              stage0, stage1, t0, L,
              [&](int t) { return to_acc(seq.B[s * p.B_dstate_stride + seq_to_pos(k, t, h, w, L) * p.B_pos_stride]); },
              [&](int t) { return to_acc(seq.C[s * p.C_dstate_stride + seq_to_pos(k, t, h, w, L) * p.C_pos_stride]); },
              B_v, C_v);

          // 1. forward states x_t of this tile, from the checkpoint of the previous tile.
          acc_t a_v[kNItems], x_v[kNItems], agg_a = acc_t(1), agg_b = acc_t(0);
#pragma unroll
          for (int i = 0; i < kNItems; ++i) {
            a_v[i] = exp_acc(dt_v[i] * A_s);
            x_v[i] = dtu_v[i] * B_v[i];  // b_t for now
            agg_b = a_v[i] * agg_b + x_v[i];
            agg_a = a_v[i] * agg_a;
          }
          const acc_t x0 = tile > 0 ? seq.ckpt[static_cast<index_t>(tile - 1) * n + s] : acc_t(0);
          acc_t unused;
          acc_t x = ScanFwd::run(scan_storage, agg_a, agg_b, x0, unused);
          acc_t ax_v[kNItems];  // a_t * x_{t-1} = x_t - b_t
#pragma unroll
          for (int i = 0; i < kNItems; ++i) {
            ax_v[i] = a_v[i] * x;
            x = ax_v[i] + x_v[i];
            x_v[i] = x;
          }

          // 2. adjoint, scanned from the last step to the first: h <- a_t * (h + dy_t C_t).
          agg_a = acc_t(1);
          agg_b = acc_t(0);
#pragma unroll
          for (int i = kNItems - 1; i >= 0; --i) {
            agg_b = a_v[i] * (agg_b + dy_v[i] * C_v[i]);
            agg_a = a_v[i] * agg_a;
          }
          acc_t h_out;
          acc_t hcur = ScanRev::run(scan_storage, agg_a, agg_b, rev_carry[s], h_out);
          if (threadIdx.x == 0) rev_carry[s] = h_out;  // read by every thread before ScanRev::run's barrier

          // 3. gradients of this state.
          acc_t dB_v[kNItems], dC_v[kNItems], dA_sum = acc_t(0);
#pragma unroll
          for (int i = kNItems - 1; i >= 0; --i) {
            const acc_t g = dy_v[i] * C_v[i] + hcur;
            hcur = a_v[i] * g;
            dC_v[i] = dy_v[i] * x_v[i];
            dB_v[i] = g * dtu_v[i];
            du_v[i] += g * dt_v[i] * B_v[i];
            ddt_v[i] += g * (A_s * ax_v[i] + u_v[i] * B_v[i]);
            dA_sum += g * dt_v[i] * ax_v[i];
          }
          dA_sum = warp_sum(dA_sum);
          if (lane == 0) dA_warp[warp * n + s] += dA_sum;  // one writer per slot

          TileT::store2(stage0, stage1, t0, L, dB_v, dC_v, [&](int t, acc_t vb, acc_t vc) {
            const index_t off = static_cast<index_t>(s) * L + seq_to_pos(k, t, h, w, L);
            dB_part[off] = first_in_slab ? vb : dB_part[off] + vb;
            dC_part[off] = first_in_slab ? vc : dC_part[off] + vc;
          });
        }

#pragma unroll
        for (int i = 0; i < kNItems; ++i) {
          ddt_v[i] *= dsoft_v[i];  // d/d(delta + bias)
          if (t0 + threadIdx.x * kNItems + i < L) dbias_sum += ddt_v[i];
        }
        TileT::store(stage0, t0, L, ddt_v,
                     [&](int t, acc_t v) { store_as(seq.ddelta + seq_to_pos(k, t, h, w, L), v); });
        // Merge du over the directions in the fixed order 0, 1, 2, 3 (as y in the forward).
        TileT::store(stage0, t0, L, du_v, [&](int t, acc_t v) {
          merge_direction<kNDirs>(k, seq.du, du_acc, seq_to_pos(k, t, h, w, L), v);
        });
      }

      // Per-(batch, direction, channel) partial sums of dA, dD, ddelta_bias.
      const index_t row = (static_cast<index_t>(b) * kNDirs + k) * dim + d;
      const acc_t dD_total = block_sum<kNThreads>(dD_sum, red);
      const acc_t dbias_total = block_sum<kNThreads>(dbias_sum, red);
      if (threadIdx.x == 0) {
        static_cast<acc_t*>(p.dD_part)[row] = dD_total;
        static_cast<acc_t*>(p.ddelta_bias_part)[row] = dbias_total;
      }
      __syncthreads();  // dA_warp complete
      for (int s = threadIdx.x; s < n; s += kNThreads) {
        acc_t total = acc_t(0);
        for (int wi = 0; wi < kNWarps; ++wi) total += dA_warp[wi * n + s];
        static_cast<acc_t*>(p.dA_part)[row * n + s] = total;
      }
    }
  }
}

// out[o, i] = sum over j of part[o, j, i], j ascending (deterministic), converted to out_t.
template <typename acc_t, typename out_t>
__global__ void sum_middle_kernel(const acc_t* __restrict__ part, out_t* __restrict__ out, index_t outer,
                                  index_t mid, index_t inner) {
  const index_t total = outer * inner;
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t o = idx / inner, i = idx - o * inner;
    const acc_t* src = part + o * mid * inner + i;
    acc_t acc = acc_t(0);
    for (index_t j = 0; j < mid; ++j) acc += src[j * inner];
    store_as(out + idx, acc);
  }
}

template <typename acc_t, typename out_t>
cudaError_t launch_sum_middle(const void* part, void* out, index_t outer, index_t mid, index_t inner,
                              cudaStream_t stream) {
  const index_t total = outer * inner;
  if (total == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const index_t blocks = (total + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
  return launch_kernel(sum_middle_kernel<acc_t, out_t>, grid, kThreads, 0, stream, static_cast<const acc_t*>(part),
                       static_cast<out_t*>(out), outer, mid, inner);
}

// Backward scan (one block per (batch, slab of channels)), then the fixed-order reductions into dB, dC
// (input dtype) and dA, dD, ddelta_bias (compute dtype).
template <int kNDirs, typename input_t>
cudaError_t launch_scan_bwd(const ScanCudaParams& p, cudaStream_t stream) {
  using acc_t = typename AccType<input_t>::type;
  if (p.batch == 0 || p.dim == 0 || p.seqlen == 0) return cudaSuccess;  // the binding zero-fills
  cudaError_t err = dispatch_tile_config</*kBackward=*/true>(p.seqlen, [&](auto cfg) {
    using Cfg = decltype(cfg);
    return launch_kernel(scan_bwd_kernel<Cfg::kNThreads, Cfg::kNItems, kNDirs, input_t>,
                         static_cast<unsigned>(p.batch * p.n_slabs), Cfg::kNThreads,
                         bwd_smem_bytes<Cfg::kNThreads, Cfg::kNItems, acc_t>(static_cast<int>(p.dstate)), stream, p);
  });
  if (err != cudaSuccess) return err;

  const index_t nL = p.dstate * p.seqlen;
  const index_t rows_B = p.batch * kNDirs * p.n_groups_B, rows_C = p.batch * kNDirs * p.n_groups_C;
  err = launch_sum_middle<acc_t, input_t>(p.dB_part, p.dB, rows_B, p.n_slabs / p.n_groups_B, nL, stream);
  if (err != cudaSuccess) return err;
  err = launch_sum_middle<acc_t, input_t>(p.dC_part, p.dC, rows_C, p.n_slabs / p.n_groups_C, nL, stream);
  if (err != cudaSuccess) return err;
  const index_t per_batch = kNDirs * p.dim;
  err = launch_sum_middle<acc_t, acc_t>(p.dA_part, p.dA, 1, p.batch, per_batch * p.dstate, stream);
  if (err != cudaSuccess) return err;
  err = launch_sum_middle<acc_t, acc_t>(p.dD_part, p.dD, 1, p.batch, per_batch, stream);
  if (err != cudaSuccess) return err;
  return launch_sum_middle<acc_t, acc_t>(p.ddelta_bias_part, p.ddelta_bias, 1, p.batch, per_batch, stream);
}

}  // namespace cuda
}  // namespace grainseg
