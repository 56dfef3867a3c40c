// Explicit-SIMD step kernels of the CPU scan for fp32 compute, written once over an instruction-set
// traits struct: `Avx512` (16 floats per register, state sizes n = 16, 32, 64) and `Avx2` (AVX2 + FMA,
// 8 floats, n = 8, 16).  scan_cpu_kernel.h wraps them in a step core (SimdCore) and picks, per state
// size, the widest one the build targets; everything else runs the generic `omp simd` core.
//
// Why: at VM-UNet's n = 16 the scan is bound by vector instructions, not memory.  Against the generic
// loops these save instructions in three places:
//   * exp: as exp2 of the argument with A pre-scaled by log2(e); 2^k by vscalefps on AVX-512, by
//     building the exponent bits on AVX2 (10-13 instructions, 9-12 for bf16 / fp16 inputs, where
//     exp_f32 compiles to about 18);
//   * the per-step sums over n (<x, C> in the forward, two sums in the backward): each step stores its
//     register-wide partial vector, and one transpose-and-add tree sums a register's width of steps at
//     once (about 2 instructions per step instead of a horizontal reduction per step);
//   * the state, its gradient and A stay in registers across the whole lane.
// The recurrences are the generic kernel's; the exponential differs by rounding (both ~1 ulp) and the
// n-sums are added in another order.
#pragma once

#include "cpu/scan_kernel_ns.h"

#include "scan_params.h"

#if defined(__AVX__)
#include <immintrin.h>

namespace grainseg {
namespace cpu {
namespace GRAINSEG_KERNEL_NS {
namespace simd {

// Sum of the 8 floats of an AVX register (in-register pairwise tree).  Needs AVX only: the generic
// core's tree_sum uses it too.
inline float hsum8(__m256 x) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

}  // namespace simd
}  // namespace GRAINSEG_KERNEL_NS
}  // namespace cpu
}  // namespace grainseg
#endif

#if defined(__AVX512F__)
#define GRAINSEG_HAVE_AVX512 1
#endif
#if defined(__AVX2__) && defined(__FMA__)
#define GRAINSEG_HAVE_AVX2 1
#endif
#if defined(GRAINSEG_HAVE_AVX512) || defined(GRAINSEG_HAVE_AVX2)
#include <immintrin.h>

namespace grainseg {
namespace cpu {
namespace GRAINSEG_KERNEL_NS {
namespace simd {

// log2(e): the cores keep A pre-scaled by it, a2 = a log2(e), so exp(dt a) = exp2(dt a2) and the
// exponential needs no scaling multiply of its own.
constexpr float kLog2e = 1.44269504088896341f;

// 2^f for |f| <= 1/2 by a polynomial with constant term 1, fitted to the relative error of 2^f (near
// minimax).  Evaluated in fp32 the largest relative error over the interval is 8.4e-8 at degree 6 (about
// 1 ulp, as the degree-7 Taylor polynomial used before: 7.7e-8), or 1.6e-7 at degree 5 (kFast: for bf16 /
// fp16 inputs, whose own rounding, 4e-3 / 5e-4, is four orders larger).  One FMA per degree.
template <typename I, bool kFast = false>
inline typename I::V exp2_fraction(typename I::V f) {
  typename I::V p;
  if constexpr (kFast) {
    p = I::set1(1.3252543285e-03f);
    p = I::fmadd(p, f, I::set1(9.6716284752e-03f));
    p = I::fmadd(p, f, I::set1(5.5507749319e-02f));
    p = I::fmadd(p, f, I::set1(2.4022239447e-01f));
    p = I::fmadd(p, f, I::set1(6.9314694405e-01f));
  } else {
    p = I::set1(1.5370704932e-04f);
    p = I::fmadd(p, f, I::set1(1.3399848249e-03f));
    p = I::fmadd(p, f, I::set1(9.6183735877e-03f));
    p = I::fmadd(p, f, I::set1(5.5503290147e-02f));
    p = I::fmadd(p, f, I::set1(2.4022647738e-01f));
    p = I::fmadd(p, f, I::set1(6.9314718246e-01f));
  }
  return I::fmadd(p, f, I::set1(1.0f));
}

// The ISA traits: V, kWidth, load / store / set1 / zero / add / mul / fmadd, exp2 and row_sums.
//   exp2<kFast>(t): 2^t, as exp(t ln 2) to about 1 ulp (kFast: about 2, see exp2_fraction): t = k + f,
//            k = round(t); t clamped to [-126, 128], i.e. exp's argument to [-87.34, 88.72] like
//            exp_f32 (scan_math.h): results stay normal at the bottom and overflow to inf at the top.
//            max / min take the constant first so that a NaN t propagates.
//   row_sums(v, rows, out): out[i] = sum of row i, for `rows` rows of kWidth floats stored contiguously.
//            Groups of kWidth rows go through a transpose-and-add tree: pairs within 128-bit lanes
//            (unpack), quads (shuffle), then across lanes, leaving row i's sum in element i.

#if defined(GRAINSEG_HAVE_AVX512)
struct Avx512 {
  using V = __m512;
  static constexpr index_t kWidth = 16;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V zero() { return _mm512_setzero_ps(); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }

  template <bool kFast = false>
  static V exp2(V t) {
    t = _mm512_min_ps(_mm512_set1_ps(128.0f), _mm512_max_ps(_mm512_set1_ps(-126.0f), t));
    const V k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_scalef_ps(exp2_fraction<Avx512, kFast>(_mm512_sub_ps(t, k)), k);
  }

  static void row_sums(const float* v, index_t rows, float* out) {
    const auto pair = [](V a, V b) { return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); };
    const auto quad = [](V s01, V s23) {
      return _mm512_add_ps(_mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
    };
    const auto lanes = [](V a, V b) {
      return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    };
    index_t i = 0;
    for (; i + kWidth <= rows; i += kWidth) {
      const float* r = v + i * kWidth;
      V t[4];
      for (int g = 0; g < 4; ++g) {
        const float* q = r + 4 * g * kWidth;
        t[g] = quad(pair(load(q), load(q + kWidth)), pair(load(q + 2 * kWidth), load(q + 3 * kWidth)));
      }
      store(out + i, lanes(lanes(t[0], t[1]), lanes(t[2], t[3])));
    }
    for (; i < rows; ++i) out[i] = _mm512_reduce_add_ps(load(v + i * kWidth));
  }
};
#endif

#if defined(GRAINSEG_HAVE_AVX2)
struct Avx2 {
  using V = __m256;
  static constexpr index_t kWidth = 8;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V zero() { return _mm256_setzero_ps(); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }

  // 2^k from the exponent bits (k + 127) << 23: k in [-126, 128] gives 2^-126 .. inf exactly.
  template <bool kFast = false>
  static V exp2(V t) {
    t = _mm256_min_ps(_mm256_set1_ps(128.0f), _mm256_max_ps(_mm256_set1_ps(-126.0f), t));
    const V k = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(exp2_fraction<Avx2, kFast>(_mm256_sub_ps(t, k)), _mm256_castsi256_ps(bits));
  }

  static void row_sums(const float* v, index_t rows, float* out) {
    const auto pair = [](V a, V b) { return _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b)); };
    const auto quad = [](V s01, V s23) {
      return _mm256_add_ps(_mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
    };
    index_t i = 0;
    for (; i + kWidth <= rows; i += kWidth) {
      const float* r = v + i * kWidth;
      const V t0 = quad(pair(load(r), load(r + kWidth)), pair(load(r + 2 * kWidth), load(r + 3 * kWidth)));
      const V t1 = quad(pair(load(r + 4 * kWidth), load(r + 5 * kWidth)), pair(load(r + 6 * kWidth), load(r + 7 * kWidth)));
      store(out + i, _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31)));
    }
    for (; i < rows; ++i) out[i] = hsum8(load(v + i * kWidth));
  }
};
#endif

// Forward over `len` steps of one lane on step rows (B, C: row s = step s, M * kWidth values):
// x = exp2(dt a2) x + dt u B, and row s of `rows` gets the register-wide partial sums of x * C
// (row_sums turns them into <x, C>).  x (M registers) carries across calls.  kFast: exp2<true>.
template <typename I, int M, bool kFast>
inline void fwd_steps(typename I::V (&x)[M], const typename I::V (&a2)[M], const float* B, const float* C,
                      const float* dt, const float* dtu, index_t len, float* rows) {
  using V = typename I::V;
  constexpr index_t W = I::kWidth, N = M * W;
  for (index_t s = 0; s < len; ++s) {
    const V vdt = I::set1(dt[s]), vdtu = I::set1(dtu[s]);
    V acc = I::zero();
    for (int i = 0; i < M; ++i) {
      const V e = I::template exp2<kFast>(I::mul(vdt, a2[i]));
      x[i] = I::fmadd(e, x[i], I::mul(vdtu, I::load(B + s * N + i * W)));
      acc = I::fmadd(x[i], I::load(C + s * N + i * W), acc);
    }
    I::store(rows + s * W, acc);
  }
}

// Backward recompute of one chunk: states xs[j] and decays decay[j] = exp2(dt_j a2) (rows of N) from x0.
template <typename I, int M, bool kFast>
inline void recompute_steps(const typename I::V (&a2)[M], const float* x0, const float* B, const float* dt,
                            const float* dtu, index_t len, float* xs, float* decay) {
  using V = typename I::V;
  constexpr index_t W = I::kWidth, N = M * W;
  V x[M];
  for (int i = 0; i < M; ++i) x[i] = I::load(x0 + i * W);
  for (index_t j = 0; j < len; ++j) {
    const V vdt = I::set1(dt[j]), vdtu = I::set1(dtu[j]);
    for (int i = 0; i < M; ++i) {
      const index_t o = j * N + i * W;
      const V e = I::template exp2<kFast>(I::mul(vdt, a2[i]));
      x[i] = I::fmadd(e, x[i], I::mul(vdtu, I::load(B + o)));
      I::store(decay + o, e);
      I::store(xs + o, x[i]);
    }
  }
}

// Backward reverse walk of one chunk (j = len-1 .. 0), the generic core's step in registers: carries
// dx (dL/dx) and dA, accumulates into the dB / dC step rows, and stores the register-wide partial sums
// of dL/d(dt u) and dL/d(dt) of step j as rows j of rows_dtu / rows_dt.
template <typename I, int M>
inline void reverse_steps(typename I::V (&dx)[M], typename I::V (&dA)[M], const typename I::V (&a)[M],
                          const float* x0, const float* xs, const float* decay, const float* B, const float* C,
                          float* dB, float* dC, const float* g, const float* dt, const float* dtu, index_t len,
                          float* rows_dtu, float* rows_dt) {
  using V = typename I::V;
  constexpr index_t W = I::kWidth, N = M * W;
  for (index_t j = len - 1; j >= 0; --j) {
    const float* xp = j > 0 ? xs + (j - 1) * N : x0;
    const V vg = I::set1(g[j]), vdt = I::set1(dt[j]), vdtu = I::set1(dtu[j]);
    V acc_dtu = I::zero(), acc_dt = I::zero();
    for (int i = 0; i < M; ++i) {
      const index_t o = j * N + i * W;
      const V e = I::load(decay + o);
      const V dxn = I::fmadd(vg, I::load(C + o), dx[i]);
      I::store(dC + o, I::fmadd(vg, I::load(xs + o), I::load(dC + o)));
      I::store(dB + o, I::fmadd(dxn, vdtu, I::load(dB + o)));
      const V dlog = I::mul(dxn, I::mul(I::load(xp + i * W), e));  // d / d(dt a_n)
      dA[i] = I::fmadd(dlog, vdt, dA[i]);
      dx[i] = I::mul(dxn, e);
      acc_dtu = I::fmadd(dxn, I::load(B + o), acc_dtu);
      acc_dt = I::fmadd(dlog, a[i], acc_dt);
    }
    I::store(rows_dtu + j * W, acc_dtu);
    I::store(rows_dt + j * W, acc_dt);
  }
}

}  // namespace simd
}  // namespace GRAINSEG_KERNEL_NS
}  // namespace cpu
}  // namespace grainseg

#endif  // GRAINSEG_HAVE_AVX512 || GRAINSEG_HAVE_AVX2
