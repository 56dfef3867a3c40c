// Templated CPU selective-scan kernels (forward and backward), one core for both ops.
//
// A "lane" is one (batch b, direction k, channel d) sequence: selective_scan has one direction with the
// identity order, ss2d_scan four directions whose orders index the spatial grid (scan_params.h).  The
// kernels read u and delta in place through the order, one chunk of steps at a time, into small
// per-thread buffers (never whole reordered copies of u or delta), and SIMD-vectorise over the state
// dim n (compiled as a constant for n in {4, 8, 16, 32, 64}, see with_fixed_dstate).
//
// B and C (per batch and direction, c / n times smaller than delta) are relaid once per call into
// "step rows": (batch, direction x group, step, n), each direction's steps in its own order
// (step_order_rows).  This is the one copy every call needs anyway to put n innermost for the SIMD
// loops; in step order it also makes every per-step access of the cores (B, C, and the backward's dB /
// dC partials) the next row in memory.  In spatial order the column-major directions would jump a grid
// row per step (4 KiB at 64 x 64, n = 16): a new page per access, which the hardware prefetchers do not
// follow, and for the dB / dC read-modify-writes the same address bits modulo 4 KiB as the previous
// step's store, which stalls every load on the store before it.
//
// Types: B, C, A, D, delta_bias, dA, dB, dC, dD, ddelta_bias in the compute type acc_t; u, delta, y, dy,
// du, ddelta in the input type in_t (the binding converts).  B, C, dB, dC may have any strides.
//
// Parallelism and determinism:
//   forward:  OpenMP over (batch, channel); each task loops over the directions and owns y[b, d, :].
//   backward: per batch, OpenMP over fixed channel blocks (each inside one B group and one C group).
//             du / ddelta are owned by the task; dA, dD, ddelta_bias are owned per channel and summed
//             over the batch serially; dB / dC partials live in per-block buffers reduced in block order.
//             No atomics; the result does not depend on the thread schedule (block count is fixed for
//             up to kMinBlocks threads).
#pragma once

#include "cpu/scan_kernel_ns.h"

#include <algorithm>
#include <new>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/scan_simd.h"
#include "cpu/scan_math.h"
#include "scan_params.h"

namespace grainseg {
namespace cpu {
namespace GRAINSEG_KERNEL_NS {

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// 64-byte aligned storage for the kernels' buffers: a state row of n = 16 floats is then exactly one
// cache line (glibc's malloc aligns to 16 bytes, which splits every such row over two lines).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
template <typename T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Step -> position tables of every direction, (n_dirs, seqlen).
inline std::vector<index_t> direction_positions(const ScanParams& P) {
  std::vector<index_t> pos(static_cast<size_t>(P.n_dirs * P.seqlen));
  for (index_t k = 0; k < P.n_dirs; ++k)
    for (index_t t = 0; t < P.seqlen; ++t)
      pos[k * P.seqlen + t] = direction_position(static_cast<int>(k), t, P.height, P.width);
  return pos;
}

// The position step of every (direction, chunk) whose positions advance by a constant step (row-major
// directions: +1 or -1; a column-major chunk within one column: +-width), else 0; (n_dirs, n_chunks).
// The per-chunk gathers and scatters then address u, delta, dy, du, ddelta and y by p0 + s * step
// (contiguous, vectorised loops for +-1) instead of through the position table.
inline std::vector<index_t> chunk_steps(const ScanParams& P, const std::vector<index_t>& positions) {
  const index_t L = P.seqlen, T = P.chunk, nc = P.n_chunks;
  std::vector<index_t> steps(static_cast<size_t>(P.n_dirs * nc), 0);
  for (index_t k = 0; k < P.n_dirs; ++k)
    for (index_t c = 0; c < nc; ++c) {
      const index_t* pos = positions.data() + k * L + c * T;
      const index_t len = std::min(T, L - c * T), step = len > 1 ? pos[1] - pos[0] : 1;
      bool ok = step != 0;
      for (index_t s = 1; ok && s < len; ++s) ok = pos[s] - pos[s - 1] == step;
      steps[k * nc + c] = ok ? step : 0;
    }
  return steps;
}

// The positions of one chunk's steps, s -> position: a run of step +1, of step -1, of another constant
// step, or the table.  with_chunk_positions calls f with the one that applies, so that each loop over
// a chunk compiles once per kind (the +-1 kinds vectorise).
struct UnitRun {
  index_t p0;
  index_t operator()(index_t s) const { return p0 + s; }
};
struct ReverseRun {
  index_t p0;
  index_t operator()(index_t s) const { return p0 - s; }
};
struct StrideRun {
  index_t p0, step;
  index_t operator()(index_t s) const { return p0 + s * step; }
};
struct TableRun {
  const index_t* pos;
  index_t operator()(index_t s) const { return pos[s]; }
};
template <typename F>
inline void with_chunk_positions(const index_t* pos, index_t step, const F& f) {
  if (step == 1) return f(UnitRun{pos[0]});
  if (step == -1) return f(ReverseRun{pos[0]});
  if (step != 0) return f(StrideRun{pos[0], step});
  return f(TableRun{pos});
}

// Steps per tile of the relayout loops (step_order_rows, the dB / dC reduction).
constexpr index_t kRelayoutTile = 64;

// B or C as step rows: out[(b * KG + kg) * L * n + t * n + i] = src[b, kg, i, order_k(t)] for the
// KG = n_dirs * groups (direction, group) pairs, k = kg / groups; src has strides (batch, kg, n, position).
template <typename acc_t>
AlignedVector<acc_t> step_order_rows(const ScanParams& P, const index_t* positions, const void* src, index_t groups,
                                     index_t batch_stride, index_t group_stride, index_t dstate_stride,
                                     index_t pos_stride) {
  const index_t L = P.seqlen, N = P.dstate, KG = P.n_dirs * groups;
  const index_t tiles = (L + kRelayoutTile - 1) / kRelayoutTile;
  AlignedVector<acc_t> out(static_cast<size_t>(P.batch * KG * L * N));
  const acc_t* s0 = static_cast<const acc_t*>(src);
#pragma omp parallel for collapse(2) schedule(static)
  for (index_t bg = 0; bg < P.batch * KG; ++bg) {
    for (index_t tile = 0; tile < tiles; ++tile) {
      const index_t b = bg / KG, kg = bg % KG, t0 = tile * kRelayoutTile, t1 = std::min(L, t0 + kRelayoutTile);
      const index_t* order = positions + (kg / groups) * L;
      const acc_t* s = s0 + b * batch_stride + kg * group_stride;
      acc_t* o = out.data() + bg * L * N;
      for (index_t i = 0; i < N; ++i)
        for (index_t t = t0; t < t1; ++t) o[t * N + i] = s[i * dstate_stride + order[t] * pos_stride];
    }
  }
  return out;
}

// B and C of a call as step rows.
template <typename acc_t>
struct BCRows {
  AlignedVector<acc_t> B, C;
  BCRows(const ScanParams& P, const index_t* positions)
      : B(step_order_rows<acc_t>(P, positions, P.B, P.n_groups_B, P.B_batch_stride, P.B_group_stride,
                                 P.B_dstate_stride, P.B_pos_stride)),
        C(step_order_rows<acc_t>(P, positions, P.C, P.n_groups_C, P.C_batch_stride, P.C_group_stride,
                                 P.C_dstate_stride, P.C_pos_stride)) {}
};

// Pointers and constants of one (b, k, d) sequence (scan_params.h's sequence_ptrs), with B and C pointing
// into the step rows of B[b, gB] / C[b, gC] (step_order_rows: row t is step t's n values) instead of the
// strided tensors, and the step -> position order of direction k.
template <typename in_t, typename acc_t>
struct Lane : SequencePtrs<in_t, acc_t, acc_t> {
  const index_t* pos;    // order of direction k
  const index_t* steps;  // chunk_steps of direction k, (n_chunks)
};

// Params: ScanParams, or ScanBwdParams for a lane that also points at dy, du and ddelta.
template <typename in_t, typename acc_t, typename Params>
Lane<in_t, acc_t> make_lane(const Params& P, const index_t* positions, const index_t* steps, const BCRows<acc_t>& bc,
                            index_t b, index_t k, index_t d) {
  Lane<in_t, acc_t> l;
  static_cast<SequencePtrs<in_t, acc_t, acc_t>&>(l) = sequence_ptrs<in_t, acc_t, acc_t>(P, b, k, d);
  l.B = bc.B.data() + (b * P.n_dirs * P.n_groups_B + l.gB) * P.seqlen * P.dstate;
  l.C = bc.C.data() + (b * P.n_dirs * P.n_groups_C + l.gC) * P.seqlen * P.dstate;
  l.pos = positions + k * P.seqlen;
  l.steps = steps + k * P.n_chunks;
  return l;
}

// ------------------------------------------------------------------ column-major directions, transposed
//
// Directions 1 and 3 visit the grid column by column.  Read in place, every step of their forward lanes
// loads u and delta one grid row apart and adds into y likewise: scalar accesses that do not vectorise,
// which made those lanes' gathers about 4x the unit-stride ones' (a sixth of the forward kernel at
// 64 x 64).  So the forward runs them on transposed copies of the planes, made in per-thread buffers once
// per (b, d) (u: shared by directions 1 and 3) or per lane (delta).  On the transposed (width x height)
// grid direction 1 is the row-major order and direction 3 the reverse one, i.e. directions 0 and 2, whose
// position and step tables the lane then takes; their sum goes to a transposed buffer added back into y.
// The backward does the same for large grids only (scan_bwd_cpu: direction-major lanes).

// Whether a call's column-major lanes run transposed: SS2D calls on a grid of more than one row and column.
inline bool transposes_columns(const ScanParams& P) {
  return P.n_dirs == kNumDirections && P.height > 1 && P.width > 1;
}

constexpr index_t kTransposeTile = 16;

// Calls visit(i0, i1, j0, j1) for each kTransposeTile-square tile [i0, i1) x [j0, j1) of a rows x cols
// plane: the cache blocking shared by the two transposing loops below.
template <typename Visit>
void for_each_tile(index_t rows, index_t cols, Visit&& visit) {
  for (index_t i0 = 0; i0 < rows; i0 += kTransposeTile)
    for (index_t j0 = 0; j0 < cols; j0 += kTransposeTile)
      visit(i0, std::min(rows, i0 + kTransposeTile), j0, std::min(cols, j0 + kTransposeTile));
}

// dst[j * rows + i] = src[i * cols + j] for a rows x cols plane.
template <typename T>
void transpose_plane(const T* __restrict src, T* __restrict dst, index_t rows, index_t cols) {
  for_each_tile(rows, cols, [&](index_t i0, index_t i1, index_t j0, index_t j1) {
    for (index_t j = j0; j < j1; ++j)
      for (index_t i = i0; i < i1; ++i) dst[j * rows + i] = src[i * cols + j];
  });
}

// out[p] = rowwise[p] + colwise[transposed p], converted to out_t, for a rows x cols plane (colwise holds
// the column-major directions' sums on the transposed grid).
template <typename out_t, typename acc_t>
void add_transposed(const acc_t* __restrict rowwise, const acc_t* __restrict colwise, out_t* __restrict out,
                    index_t rows, index_t cols) {
  for_each_tile(rows, cols, [&](index_t i0, index_t i1, index_t j0, index_t j1) {
    for (index_t i = i0; i < i1; ++i)
      for (index_t j = j0; j < j1; ++j)
        out[i * cols + j] = static_cast<out_t>(rowwise[i * cols + j] + colwise[j * rows + i]);
  });
}

// Points the lane of column-major direction k (1 or 3) at transposed planes of u and delta and at the
// order tables of direction k - 1 (row-major on the transposed grid).
template <typename in_t, typename acc_t>
void run_on_transposed(Lane<in_t, acc_t>& l, const ScanParams& P, const index_t* positions, const index_t* steps,
                       index_t k, const in_t* uT, const in_t* deltaT) {
  l.u = uT;
  l.delta = deltaT;
  l.pos = positions + (k - 1) * P.seqlen;
  l.steps = steps + (k - 1) * P.n_chunks;
}

// Per-thread buffers for one chunk of steps: the gathered inputs (u, dt, dt u, softplus', dy), the
// per-step sums over n the step cores produce (sum_a, sum_b), and the register-wide rows (at most 16
// floats) the SIMD cores reduce into them.
template <typename acc_t>
struct ChunkBuffers {
  AlignedVector<acc_t> u, dt, dtu, dsoftplus, g, sum_a, sum_b, rows_a, rows_b;
  explicit ChunkBuffers(index_t chunk)
      : u(chunk), dt(chunk), dtu(chunk), dsoftplus(chunk), g(chunk), sum_a(chunk), sum_b(chunk),
        rows_a(chunk * 16), rows_b(chunk * 16) {}
};

// Gathers u and delta for steps [t0, t0 + len) of a lane (positions at(s), with_chunk_positions) and
// computes dt, dt * u and (backward) the softplus derivative.  Separate loops so the elementwise math
// vectorises.
template <typename in_t, typename acc_t, typename Run>
void load_chunk(const Lane<in_t, acc_t>& l, const Run& at, index_t len, bool softplus_on, bool want_grad,
                ChunkBuffers<acc_t>& cb) {
  acc_t* __restrict uu = cb.u.data();
  acc_t* __restrict dt = cb.dt.data();
  acc_t* __restrict dtu = cb.dtu.data();
  const in_t* __restrict u = l.u;
  const in_t* __restrict delta = l.delta;
  const acc_t bias = l.bias;
  for (index_t s = 0; s < len; ++s) {
    const index_t p = at(s);
    uu[s] = static_cast<acc_t>(u[p]);
    dt[s] = static_cast<acc_t>(delta[p]) + bias;
  }
  if (softplus_on && want_grad) {
    acc_t* __restrict ds = cb.dsoftplus.data();
#pragma omp simd
    for (index_t s = 0; s < len; ++s) dt[s] = softplus_and_grad(dt[s], ds[s]);
  } else if (softplus_on) {
#pragma omp simd
    for (index_t s = 0; s < len; ++s) dt[s] = softplus(dt[s]);
  }
#pragma omp simd
  for (index_t s = 0; s < len; ++s) dtu[s] = dt[s] * uu[s];
}

// Sum of kN values (kN a power of two) in pairwise order: a tree ending in an in-register reduction of 8
// on AVX, instead of the chain of kN scalar adds a fully unrolled sequential sum compiles to.  (fp32 at the
// state sizes of the SIMD cores, scan_simd.h, does not come here.)
template <index_t kN, typename acc_t>
inline acc_t tree_sum(acc_t* __restrict v) {
#if defined(__AVX__)
  if constexpr (kN == 8 && std::is_same_v<acc_t, float>) return simd::hsum8(_mm256_loadu_ps(v));
#endif
  if constexpr (kN == 1) {
    return v[0];
  } else {
    for (index_t i = 0; i < kN / 2; ++i) v[i] += v[i + kN / 2];
    return tree_sum<kN / 2>(v);
  }
}

// Sum of v[0..N): tree_sum when N == kN is fixed, else an omp simd reduction.
template <index_t kN, typename acc_t>
inline acc_t sum_n(acc_t* __restrict v, index_t N) {
  if constexpr (kN > 0 && (kN & (kN - 1)) == 0) {
    return tree_sum<kN>(v);
  } else {
    acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
    for (index_t n = 0; n < N; ++n) acc += v[n];
    return acc;
  }
}

// Stack size of per-step term arrays: kN when fixed, else the largest supported n.
template <index_t kN>
constexpr index_t kTermsSize = kN > 0 ? kN : kMaxDState;

// One forward step of the state: x = exp(dt a) x + dt u B; returns <x, C>.  The loop stores the terms
// of <x, C> and sum_n reduces them (a reduction inside the loop would block unrolling for fixed kN).
template <index_t kN, typename acc_t>
inline acc_t state_step(acc_t* __restrict x, const acc_t* __restrict a, const acc_t* __restrict Bt,
                        const acc_t* __restrict Ct, acc_t dt, acc_t dtu, index_t N) {
  acc_t terms[kTermsSize<kN>];
#pragma omp simd
  for (index_t n = 0; n < (kN > 0 ? kN : N); ++n) {
    const acc_t xn = scan_exp(dt * a[n]) * x[n] + dtu * Bt[n];
    x[n] = xn;
    terms[n] = xn * Ct[n];
  }
  return sum_n<kN>(terms, N);
}

// ------------------------------------------------------------------------------------------ step cores
//
// A step core holds one lane's running state (x in the forward; dL/dx and dA in the backward) and runs
// the steps of one chunk on step rows (row j = the chunk's step j, n values); lane_fwd / lane_bwd drive
// it chunk by chunk.  Interface:
//   fwd_chunk(B, C, len, cb)        x_j = exp(dt_j a) x_{j-1} + dt_j u_j B_j; cb.sum_a[j] = <x_j, C_j>
//   save_state(dst)                 copies x (the chunk's checkpoint)
//   bwd_chunk(B, C, len, x0, cb, xs, decay, dB, dC)
//                                   recomputes the chunk's states from x0, walks it in reverse adding into
//                                   the dB / dC rows, and leaves dL/d(dt u) in cb.sum_a, dL/d(dt) in cb.sum_b
//   add_dA(out)                     out += the lane's dA
// GenericCore works for every type and n (omp simd loops; kN = 0 reads n at run time, state in `heap`).
template <index_t kN, typename acc_t>
struct GenericCore {
  const index_t N;
  const acc_t* __restrict a;
  acc_t x_local[kN > 0 ? kN : 1], dx_local[kN > 0 ? kN : 1], dA_local[kN > 0 ? kN : 1];
  acc_t *x, *dx, *dA;

  GenericCore(const acc_t* A, index_t n, acc_t* heap)  // heap: 3 n values, used when kN == 0
      : N(kN > 0 ? kN : n), a(A), x(kN > 0 ? x_local : heap), dx(kN > 0 ? dx_local : heap + n),
        dA(kN > 0 ? dA_local : heap + 2 * n) {
    std::fill(x, x + N, acc_t(0));
    std::fill(dx, dx + N, acc_t(0));
    std::fill(dA, dA + N, acc_t(0));
  }

  void fwd_chunk(const acc_t* B, const acc_t* C, index_t len, ChunkBuffers<acc_t>& cb) {
    for (index_t s = 0; s < len; ++s)
      cb.sum_a[s] = state_step<kN>(x, a, B + s * N, C + s * N, cb.dt[s], cb.dtu[s], N);
  }

  void save_state(acc_t* dst) const { std::copy(x, x + N, dst); }

  void bwd_chunk(const acc_t* B, const acc_t* C, index_t len, const acc_t* x0, ChunkBuffers<acc_t>& cb, acc_t* xs,
                 acc_t* decay, acc_t* dB, acc_t* dC) {
    // Recompute the chunk's states and decays from the checkpoint before it.
    for (index_t j = 0; j < len; ++j) {
      const acc_t* __restrict xp = j > 0 ? xs + (j - 1) * N : x0;
      acc_t* __restrict xj = xs + j * N;
      acc_t* __restrict ej = decay + j * N;
      const acc_t* __restrict Bt = B + j * N;
      const acc_t dt = cb.dt[j], dtu = cb.dtu[j];
#pragma omp simd
      for (index_t n = 0; n < N; ++n) {
        ej[n] = scan_exp(dt * a[n]);
        xj[n] = ej[n] * xp[n] + dtu * Bt[n];
      }
    }
    // Reverse walk: dx holds dL/dx_t (carried to x_{t-1} through the decay).
    for (index_t j = len - 1; j >= 0; --j) {
      const acc_t g = cb.g[j];
      const acc_t* __restrict xp = j > 0 ? xs + (j - 1) * N : x0;
      const acc_t* __restrict xj = xs + j * N;
      const acc_t* __restrict ej = decay + j * N;
      const acc_t* __restrict Bt = B + j * N;
      const acc_t* __restrict Ct = C + j * N;
      acc_t* __restrict dBt = dB + j * N;
      acc_t* __restrict dCt = dC + j * N;
      acc_t* __restrict dxr = dx;
      acc_t* __restrict dAr = dA;
      const acc_t dt = cb.dt[j], dtu = cb.dtu[j];
      acc_t t_dtu[kTermsSize<kN>], t_dt[kTermsSize<kN>];  // terms of dL/d(dt u) and dL/d(dt)
#pragma omp simd
      for (index_t n = 0; n < N; ++n) {
        const acc_t dxn = dxr[n] + g * Ct[n];
        dCt[n] += g * xj[n];
        dBt[n] += dxn * dtu;
        const acc_t dlog = dxn * xp[n] * ej[n];  // d / d(dt * a_n)
        dAr[n] += dlog * dt;
        dxr[n] = dxn * ej[n];
        t_dtu[n] = dxn * Bt[n];
        t_dt[n] = dlog * a[n];
      }
      cb.sum_a[j] = sum_n<kN>(t_dtu, N);
      cb.sum_b[j] = sum_n<kN>(t_dt, N);
    }
  }

  void add_dA(acc_t* out) const {
    for (index_t n = 0; n < N; ++n) out[n] += dA[n];
  }
};

#if defined(GRAINSEG_HAVE_AVX512) || defined(GRAINSEG_HAVE_AVX2)
// The same core for fp32 on explicit SIMD (scan_simd.h, ISA traits I, n = M registers of I::kWidth):
// state, dL/dx, dA and A in registers.  kFast: the shorter exponential, for bf16 / fp16 inputs.
template <typename I, index_t kN, bool kFast>
struct SimdCore {
  using V = typename I::V;
  static constexpr index_t W = I::kWidth;
  static constexpr int M = static_cast<int>(kN / W);
  V a[M], a2[M], x[M], dx[M], dA[M];  // a2 = a log2(e) for the exponentials

  SimdCore(const float* A, index_t, float*) {
    for (int i = 0; i < M; ++i) {
      a[i] = I::load(A + i * W);
      a2[i] = I::mul(a[i], I::set1(simd::kLog2e));
      x[i] = dx[i] = dA[i] = I::zero();
    }
  }

  void fwd_chunk(const float* B, const float* C, index_t len, ChunkBuffers<float>& cb) {
    simd::fwd_steps<I, M, kFast>(x, a2, B, C, cb.dt.data(), cb.dtu.data(), len, cb.rows_a.data());
    I::row_sums(cb.rows_a.data(), len, cb.sum_a.data());
  }

  void save_state(float* dst) const {
    for (int i = 0; i < M; ++i) I::store(dst + i * W, x[i]);
  }

  void bwd_chunk(const float* B, const float* C, index_t len, const float* x0, ChunkBuffers<float>& cb, float* xs,
                 float* decay, float* dB, float* dC) {
    simd::recompute_steps<I, M, kFast>(a2, x0, B, cb.dt.data(), cb.dtu.data(), len, xs, decay);
    simd::reverse_steps<I, M>(dx, dA, a, x0, xs, decay, B, C, dB, dC, cb.g.data(), cb.dt.data(), cb.dtu.data(), len,
                              cb.rows_a.data(), cb.rows_b.data());
    I::row_sums(cb.rows_a.data(), len, cb.sum_a.data());
    I::row_sums(cb.rows_b.data(), len, cb.sum_b.data());
  }

  void add_dA(float* out) const {
    for (int i = 0; i < M; ++i) I::store(out + i * W, I::add(I::load(out + i * W), dA[i]));
  }
};
#endif

// The step core of a state size and compute type: fp32 takes the widest SIMD core the build targets
// that fits n in at most 4 registers (AVX-512: n = 16, 32, 64; AVX2: n = 8, 16), the rest GenericCore.
// kFast (inputs of lower precision than acc_t) selects the SIMD cores' shorter exponential.
template <index_t kN, typename acc_t, bool kFast>
struct ChooseCore {
  using type = GenericCore<kN, acc_t>;
};
template <index_t kN, bool kFast>
struct ChooseCore<kN, float, kFast> {
  template <typename I>
  static constexpr bool fits = kN > 0 && kN % I::kWidth == 0 && kN / I::kWidth <= 4;
  static auto pick() {
#if defined(GRAINSEG_HAVE_AVX512)
    if constexpr (fits<simd::Avx512>) return static_cast<SimdCore<simd::Avx512, kN, kFast>*>(nullptr);
    else
#endif
#if defined(GRAINSEG_HAVE_AVX2)
    if constexpr (fits<simd::Avx2>) return static_cast<SimdCore<simd::Avx2, kN, kFast>*>(nullptr);
    else
#endif
      return static_cast<GenericCore<kN, float>*>(nullptr);
  }
  using type = std::remove_pointer_t<decltype(pick())>;
};
template <index_t kN, typename in_t, typename acc_t>
using StepCore = typename ChooseCore<kN, acc_t, !std::is_same_v<in_t, acc_t>>::type;

// ---------------------------------------------------------------------------------------------- forward

// Calls f(std::integral_constant<index_t, kN>) with kN = N for the state sizes compiled as constants
// (the n-loops unroll and reduce in registers: 3-4x faster than the generic code), else kN = 0.
// 16 is VM-UNet's and Mamba's default.
template <typename F>
inline void with_fixed_dstate(index_t N, const F& f) {
  switch (N) {
    case 4: return f(std::integral_constant<index_t, 4>{});
    case 8: return f(std::integral_constant<index_t, 8>{});
    case 16: return f(std::integral_constant<index_t, 16>{});
    case 32: return f(std::integral_constant<index_t, 32>{});
    case 64: return f(std::integral_constant<index_t, 64>{});
    default: return f(std::integral_constant<index_t, 0>{});
  }
}

// Forward of one lane: adds its outputs into ybuf (spatial layout) and writes its checkpoints.  kN > 0
// fixes the state size at compile time; 0 reads it from P (state in heap, 3 n values).
template <index_t kN, typename in_t, typename acc_t>
void lane_fwd(const ScanParams& P, const Lane<in_t, acc_t>& l, acc_t* __restrict ybuf, ChunkBuffers<acc_t>& cb,
              acc_t* heap) {
  const index_t L = P.seqlen, T = P.chunk, N = P.dstate;
  StepCore<kN, in_t, acc_t> core(l.A, N, heap);
  for (index_t c = 0, t0 = 0; t0 < L; ++c, t0 += T) {
    const index_t len = std::min(T, L - t0);
    with_chunk_positions(l.pos + t0, l.steps[c], [&](const auto& at) {
      load_chunk(l, at, len, P.delta_softplus, false, cb);
      core.fwd_chunk(l.B + t0 * N, l.C + t0 * N, len, cb);
      const acc_t* __restrict sa = cb.sum_a.data();
      const acc_t* __restrict uu = cb.u.data();
      const acc_t D = l.D;
      for (index_t s = 0; s < len; ++s) ybuf[at(s)] += sa[s] + D * uu[s];
    });
    core.save_state(l.ckpt + c * N);
  }
}

template <typename in_t, typename acc_t>
void scan_fwd_cpu(const ScanParams& P) {
  const index_t L = P.seqlen;
  const std::vector<index_t> positions = direction_positions(P);
  const std::vector<index_t> steps = chunk_steps(P, positions);
  const BCRows<acc_t> bc(P, positions.data());
  const index_t tasks = P.batch * P.dim;
  const bool transpose = transposes_columns(P);
  const index_t LT = transpose ? L : 0;
#pragma omp parallel
  {
    AlignedVector<acc_t> ybuf(L), ybufT(LT), heap(3 * P.dstate);  // ybufT: the column-major directions' sum
    AlignedVector<in_t> uT(LT), deltaT(LT);
    ChunkBuffers<acc_t> cb(P.chunk);
#pragma omp for schedule(dynamic, 1)
    for (index_t task = 0; task < tasks; ++task) {
      const index_t b = task / P.dim, d = task % P.dim;
      std::fill(ybuf.begin(), ybuf.end(), acc_t(0));
      std::fill(ybufT.begin(), ybufT.end(), acc_t(0));
      for (index_t k = 0; k < P.n_dirs; ++k) {
        Lane<in_t, acc_t> l = make_lane<in_t, acc_t>(P, positions.data(), steps.data(), bc, b, k, d);
        acc_t* out = ybuf.data();
        if (transpose && (k & 1)) {
          if (k == 1) transpose_plane(l.u, uT.data(), P.height, P.width);
          transpose_plane(l.delta, deltaT.data(), P.height, P.width);
          run_on_transposed(l, P, positions.data(), steps.data(), k, uT.data(), deltaT.data());
          out = ybufT.data();
        }
        with_fixed_dstate(P.dstate, [&](auto kN) {
          lane_fwd<decltype(kN)::value>(P, l, out, cb, heap.data());
        });
      }
      in_t* y = sequence_ptrs<in_t, acc_t, acc_t>(P, b, 0, d).y;
      if (transpose) {
        add_transposed(ybuf.data(), ybufT.data(), y, P.height, P.width);
      } else {
        for (index_t p = 0; p < L; ++p) y[p] = static_cast<in_t>(ybuf[p]);
      }
    }
  }
}

// --------------------------------------------------------------------------------------------- backward

// Fixed channel blocks for the backward: each lies inside one B group and one C group (so its dB / dC
// partial covers one group per direction), at least kMinBlocks of them so the split and therefore the
// summation order do not depend on the thread count.
constexpr index_t kMinBlocks = 8;

struct ChannelBlock {
  index_t begin, end, gB, gC;
};

inline std::vector<ChannelBlock> channel_blocks(const ScanParams& P) {
  const index_t cpgB = P.dim / P.n_groups_B, cpgC = P.dim / P.n_groups_C;
  std::vector<index_t> cuts;
  for (index_t d = 0; d <= P.dim; d += cpgB) cuts.push_back(d);
  for (index_t d = 0; d <= P.dim; d += cpgC) cuts.push_back(d);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  const index_t segments = static_cast<index_t>(cuts.size()) - 1;
  const index_t want = std::max<index_t>(kMinBlocks, max_threads());
  const index_t split = std::max<index_t>(1, (want + segments - 1) / segments);
  std::vector<ChannelBlock> blocks;
  for (index_t s = 0; s < segments; ++s) {
    const index_t lo = cuts[s], len = cuts[s + 1] - lo, parts = std::min(split, len);
    for (index_t q = 0; q < parts; ++q)
      blocks.push_back({lo + q * len / parts, lo + (q + 1) * len / parts, lo / cpgB, lo / cpgC});
  }
  return blocks;
}

// Per-thread buffers of the backward: recomputed states and decays of one chunk; du of a block's channels,
// and, when the column-major lanes run transposed (LT = L, else 0), their du (transposed, per channel) and
// the transposed planes of one lane (u, dy, delta, ddelta).
template <typename in_t, typename acc_t>
struct BwdScratch {
  ChunkBuffers<acc_t> cb;
  AlignedVector<acc_t> xs, decay, heap, zero, du, duT;
  AlignedVector<in_t> uT, dyT, deltaT, ddeltaT;
  BwdScratch(index_t chunk, index_t N, index_t L, index_t LT, index_t channels)
      : cb(chunk), xs(chunk * N), decay(chunk * N), heap(3 * N), zero(N, acc_t(0)), du(channels * L),
        duT(channels * LT), uT(LT), dyT(LT), deltaT(LT), ddeltaT(LT) {}
};

// Backward of one lane (made from the ScanBwdParams: it points at dy and ddelta): walks the chunks in
// reverse, recomputing each chunk's states from the checkpoint before it (kN as in lane_fwd).  Adds into
// du (spatial, per thread), dBp / dCp (spatial (position, n) partials of the block), and dA / dD /
// ddelta_bias of (k, d); writes ddelta.
template <index_t kN, typename in_t, typename acc_t>
void lane_bwd(const ScanBwdParams& P, const Lane<in_t, acc_t>& l, acc_t* dBp, acc_t* dCp, acc_t* dA_out,
              acc_t& dD_out, acc_t& dbias_out, acc_t* du_acc, BwdScratch<in_t, acc_t>& s) {
  const index_t L = P.seqlen, N = P.dstate, T = P.chunk;
  const in_t* dy = l.dy;
  in_t* ddelta = l.ddelta;
  ChunkBuffers<acc_t>& cb = s.cb;
  StepCore<kN, in_t, acc_t> core(l.A, N, s.heap.data());
  acc_t dD = 0, dbias = 0;
  for (index_t c = P.n_chunks - 1; c >= 0; --c) {
    const index_t t0 = c * T, len = std::min(T, L - t0);
    with_chunk_positions(l.pos + t0, l.steps[c], [&](const auto& at) {
      load_chunk(l, at, len, P.delta_softplus, true, cb);
      for (index_t j = 0; j < len; ++j) cb.g[j] = static_cast<acc_t>(dy[at(j)]);
      const acc_t* x0 = c > 0 ? l.ckpt + (c - 1) * N : s.zero.data();
      core.bwd_chunk(l.B + t0 * N, l.C + t0 * N, len, x0, cb, s.xs.data(), s.decay.data(), dBp + t0 * N,
                     dCp + t0 * N);
      // Per-step gradients (vectorised: dd in place of sum_b, the du terms in sum_a), then the scatters.
      const acc_t* __restrict g = cb.g.data();
      const acc_t* __restrict uu = cb.u.data();
      const acc_t* __restrict dtv = cb.dt.data();
      const acc_t* __restrict dsp = cb.dsoftplus.data();
      acc_t* __restrict d_dtu = cb.sum_a.data();
      acc_t* __restrict dd = cb.sum_b.data();
      const acc_t Dv = l.D;
      const bool sp = P.delta_softplus;
#pragma omp simd reduction(+ : dD, dbias)
      for (index_t j = 0; j < len; ++j) {
        const acc_t ddj = (dd[j] + d_dtu[j] * uu[j]) * (sp ? dsp[j] : acc_t(1));
        dD += g[j] * uu[j];
        dbias += ddj;
        dd[j] = ddj;
        d_dtu[j] = d_dtu[j] * dtv[j] + g[j] * Dv;
      }
      acc_t* __restrict du = du_acc;
#pragma omp simd
      for (index_t j = 0; j < len; ++j) {  // a chunk's positions are distinct
        const index_t p = at(j);
        du[p] += d_dtu[j];
        ddelta[p] = static_cast<in_t>(dd[j]);
      }
    });
  }
  core.add_dA(dA_out);
  dD_out += dD;
  dbias_out += dbias;
}

// Sums the blocks' dB or dC partials of one (direction, group) in block order for steps [t0, t1) and
// writes the sums to their positions in out (strides over n and positions).
template <typename acc_t>
void reduce_partials(const std::vector<const acc_t*>& parts, const index_t* order, acc_t* out, index_t dstate_stride,
                     index_t pos_stride, index_t t0, index_t t1, index_t N) {
  acc_t sum[kMaxDState];
  for (index_t t = t0; t < t1; ++t) {
    std::copy(parts[0] + t * N, parts[0] + (t + 1) * N, sum);
    for (size_t q = 1; q < parts.size(); ++q) {
      const acc_t* __restrict r = parts[q] + t * N;
#pragma omp simd
      for (index_t i = 0; i < N; ++i) sum[i] += r[i];
    }
    acc_t* o = out + order[t] * pos_stride;
    for (index_t i = 0; i < N; ++i) o[i * dstate_stride] = sum[i];
  }
}

// Above this many bytes of step rows per channel (B, C, dB, dC of every direction) the backward runs a
// block's lanes direction-major (scan_bwd_cpu).  About half of a 2 MiB L2 cache per core.
constexpr index_t kBwdRowsCacheBytes = index_t(1) << 20;

template <typename in_t, typename acc_t>
void scan_bwd_cpu(const ScanBwdParams& P) {
  const index_t L = P.seqlen, N = P.dstate, K = P.n_dirs;
  const std::vector<index_t> positions = direction_positions(P);
  const std::vector<index_t> steps = chunk_steps(P, positions);
  const BCRows<acc_t> bc(P, positions.data());
  const std::vector<ChannelBlock> blocks = channel_blocks(P);
  const index_t nblk = static_cast<index_t>(blocks.size());
  const index_t part = L * N;  // one direction's partial of one group
  // Per-block dB / dC partials as step rows, (block, direction, step, n); reused for every batch element.
  AlignedVector<acc_t> dBpart(static_cast<size_t>(nblk * K * part)), dCpart(dBpart.size());
  acc_t* dA = static_cast<acc_t*>(P.dA);
  acc_t* dD = static_cast<acc_t*>(P.dD);
  acc_t* dbias = static_cast<acc_t*>(P.ddelta_bias);
  std::fill(dA, dA + K * P.dim * N, acc_t(0));
  std::fill(dD, dD + K * P.dim, acc_t(0));
  std::fill(dbias, dbias + K * P.dim, acc_t(0));
  const index_t n_step_tiles = std::max<index_t>(1, std::min<index_t>(L, 4 * max_threads()));
  // Lane order within a block.  Channel-major (each channel's K lanes in turn) keeps the channel's u, dy
  // and du in cache across its directions.  Once a channel's step rows (B, C, dB, dC of all K
  // directions) outgrow the L2 cache (4 MiB at 64 x 64, n = 16), every lane streamed them from L3:
  // then direction-major (the block's lanes of direction k in turn, sharing that direction's rows), with
  // the column-major lanes on transposed planes as in the forward (their strided gathers and scatters cost
  // more when the rows no longer hide them).  Measured at VM-UNet-ASPP's 192 x 64^2, one thread: 19.2 ->
  // 15.7 ns per lane-step; at 32^2 and 16^2 (rows 1 MiB, 256 KiB) channel-major was 4 % faster.
  // The summation order of dB / dC (channels in order per direction) is the same in both orders.
  const bool direction_major = K * 4 * part * static_cast<index_t>(sizeof(acc_t)) > kBwdRowsCacheBytes;
  const bool transpose = direction_major && transposes_columns(P);
  const index_t H = P.height, Wd = P.width, LT = transpose ? L : 0;
  index_t max_block = 0;
  for (const ChannelBlock& blk : blocks) max_block = std::max(max_block, blk.end - blk.begin);

  for (index_t b = 0; b < P.batch; ++b) {
#pragma omp parallel
    {
      BwdScratch<in_t, acc_t> scratch(P.chunk, N, L, LT, direction_major ? max_block : 1);
#pragma omp for schedule(dynamic, 1)
      for (index_t j = 0; j < nblk; ++j) {
        const ChannelBlock& blk = blocks[j];
        acc_t* dBj = dBpart.data() + j * K * part;
        acc_t* dCj = dCpart.data() + j * K * part;
        std::fill(dBj, dBj + K * part, acc_t(0));
        std::fill(dCj, dCj + K * part, acc_t(0));
        std::fill(scratch.du.begin(), scratch.du.end(), acc_t(0));
        std::fill(scratch.duT.begin(), scratch.duT.end(), acc_t(0));
        const index_t nb = blk.end - blk.begin;
        // du of channel d accumulates in its own row of the scratch (direction-major) or in row 0 (one
        // channel at a time); complete after the channel's last lane: convert it (and add the transposed
        // lanes').
        const auto du_row = [&](index_t d) { return direction_major ? (d - blk.begin) * L : index_t(0); };
        const auto finish_du = [&](index_t d) {
          in_t* du = sequence_ptrs<in_t, acc_t, acc_t>(P, b, 0, d).du;
          const acc_t* src = scratch.du.data() + du_row(d);
          if (transpose) {
            add_transposed(src, scratch.duT.data() + du_row(d), du, H, Wd);
          } else {
            for (index_t p = 0; p < L; ++p) du[p] = static_cast<in_t>(src[p]);
          }
        };
        for (index_t q = 0; q < K * nb; ++q) {
          const index_t k = direction_major ? q / nb : q % K;
          const index_t d = blk.begin + (direction_major ? q % nb : q / K);
          Lane<in_t, acc_t> l = make_lane<in_t, acc_t>(P, positions.data(), steps.data(), bc, b, k, d);
          const index_t kd = k * P.dim + d;
          acc_t* du_acc = scratch.du.data() + du_row(d);
          in_t* ddelta = nullptr;  // set: the lane writes ddeltaT, transposed back after it
          if (transpose && (k & 1)) {
            transpose_plane(l.u, scratch.uT.data(), H, Wd);
            transpose_plane(l.dy, scratch.dyT.data(), H, Wd);
            transpose_plane(l.delta, scratch.deltaT.data(), H, Wd);
            run_on_transposed(l, P, positions.data(), steps.data(), k, scratch.uT.data(), scratch.deltaT.data());
            l.dy = scratch.dyT.data();
            ddelta = l.ddelta;
            l.ddelta = scratch.ddeltaT.data();
            du_acc = scratch.duT.data() + du_row(d);
          }
          with_fixed_dstate(N, [&](auto kN) {
            lane_bwd<decltype(kN)::value>(P, l, dBj + k * part, dCj + k * part, dA + kd * N, dD[kd], dbias[kd],
                                          du_acc, scratch);
          });
          if (ddelta) transpose_plane(scratch.ddeltaT.data(), ddelta, Wd, H);
          if (!direction_major && k == K - 1) {
            finish_du(d);
            if (d + 1 < blk.end) std::fill(scratch.du.begin(), scratch.du.begin() + L, acc_t(0));
          }
        }
        if (direction_major)
          for (index_t d = blk.begin; d < blk.end; ++d) finish_du(d);
      }
      // Reduce the partials of every (direction, group) in block order, tiled over steps.
      const index_t nG = std::max(P.n_groups_B, P.n_groups_C);
#pragma omp for collapse(2) schedule(static)
      for (index_t kg = 0; kg < K * nG; ++kg) {
        for (index_t tile = 0; tile < n_step_tiles; ++tile) {
          const index_t k = kg / nG, g = kg % nG;
          const index_t t0 = tile * L / n_step_tiles, t1 = (tile + 1) * L / n_step_tiles;
          const index_t* order = positions.data() + k * L;
          std::vector<const acc_t*> partsB, partsC;
          for (index_t j = 0; j < nblk; ++j) {
            if (blocks[j].gB == g) partsB.push_back(dBpart.data() + (j * K + k) * part);
            if (blocks[j].gC == g) partsC.push_back(dCpart.data() + (j * K + k) * part);
          }
          if (g < P.n_groups_B)
            reduce_partials(partsB, order,
                            static_cast<acc_t*>(P.dB) + b * P.dB_batch_stride + (k * P.n_groups_B + g) * P.dB_group_stride,
                            P.dB_dstate_stride, P.dB_pos_stride, t0, t1, N);
          if (g < P.n_groups_C)
            reduce_partials(partsC, order,
                            static_cast<acc_t*>(P.dC) + b * P.dC_batch_stride + (k * P.n_groups_C + g) * P.dC_group_stride,
                            P.dC_dstate_stride, P.dC_pos_stride, t0, t1, N);
        }
      }
    }
  }
}

}  // namespace GRAINSEG_KERNEL_NS
}  // namespace cpu
}  // namespace grainseg
