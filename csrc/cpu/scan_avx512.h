// AVX-512 step kernels of the CPU scan for fp32 compute and state sizes n = 16 m (m = 1..4 registers).
//
// Why: at VM-UNet's n = 16 the scan is bound by vector instructions, not memory.  Against the generic
// `omp simd` loops of scan_cpu_kernel.h these save instructions in three places:
//   * exp: as exp2 of the argument with A pre-scaled by log2(e), 2^k by vscalefps (11 instructions
//     where exp_f32 compiles to about 18);
//   * the per-step sums over n (<x, C> in the forward, two sums in the backward): each step stores its
//     16-wide partial vector and the sums of 16 steps come out of one transpose-and-add tree
//     (about 2 instructions per step instead of the ~8 of a horizontal reduction per step);
//   * the state, its gradient and A stay in registers across the whole lane.
// The recurrences are the generic kernel's; the exponential differs by rounding (both ~1 ulp) and the
// n-sums are added in another order.  Only compiled when the build targets AVX-512F (-march=native on such a CPU); other
// builds use the generic loops.
#pragma once

#if defined(__AVX512F__)
#define GRAINSEG_HAVE_AVX512 1
#include <immintrin.h>

#include "scan_params.h"

namespace grainseg {
namespace cpu {
namespace avx512 {

constexpr index_t kWidth = 16;  // floats per register

// log2(e): the cores keep A pre-scaled by it, a2 = a log2(e), so exp(dt a) = exp2(dt a2) and the
// exponential needs no scaling multiply of its own.
constexpr float kLog2e = 1.44269504088896341f;

// 2^t, as exp(t ln 2) to about 1 ulp: t = k + f with k = round(t), |f| <= 1/2; 2^f by its degree-7
// Taylor polynomial (truncation error < 6e-9 relative), 2^k by vscalefps.  t is clamped to
// [-126.0, 128.0], i.e. exp's argument to [-87.34, 88.72] like exp_f32 (scan_math.h): results stay
// normal at the bottom and overflow to inf at the top; min/max take the constant first so that a NaN
// t propagates.
inline __m512 exp2_16(__m512 t) {
  t = _mm512_max_ps(_mm512_set1_ps(-126.0f), t);
  t = _mm512_min_ps(_mm512_set1_ps(128.0f), t);
  const __m512 k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, k);
  __m512 p = _mm512_set1_ps(1.525273380405984e-05f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381608e-04f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265069591007e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471805599453e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, k);
}

// out[i] = sum of row i, for `rows` rows of 16 floats stored contiguously (row i at v + 16 i).  Groups
// of 16 rows go through a transpose-and-add tree: pairs within 128-bit lanes (unpack), quads (shuffle),
// then across lanes (shuffle_f32x4), leaving row i's sum in element i.
inline void row_sums(const float* v, index_t rows, float* out) {
  const auto pair = [](__m512 a, __m512 b) { return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); };
  const auto quad = [](__m512 s01, __m512 s23) {
    return _mm512_add_ps(_mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
  };
  const auto lanes = [](__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  };
  index_t i = 0;
  for (; i + kWidth <= rows; i += kWidth) {
    const float* r = v + i * kWidth;
    __m512 t[4];
    for (int g = 0; g < 4; ++g) {
      const float* q = r + 4 * g * kWidth;
      t[g] = quad(pair(_mm512_loadu_ps(q), _mm512_loadu_ps(q + kWidth)),
                  pair(_mm512_loadu_ps(q + 2 * kWidth), _mm512_loadu_ps(q + 3 * kWidth)));
    }
    _mm512_storeu_ps(out + i, lanes(lanes(t[0], t[1]), lanes(t[2], t[3])));
  }
  for (; i < rows; ++i) out[i] = _mm512_reduce_add_ps(_mm512_loadu_ps(v + i * kWidth));
}

// Forward over `len` steps of one lane on step rows (B, C: row s = step s, M * 16 values):
// x = exp2(dt a2) x + dt u B, and row s of `rows` gets the 16-wide partial sums of x * C (row_sums turns
// them into <x, C>).  x (M registers) carries across calls.
template <int M>
inline void fwd_steps(__m512 (&x)[M], const __m512 (&a2)[M], const float* B, const float* C, const float* dt,
                      const float* dtu, index_t len, float* rows) {
  constexpr index_t N = M * kWidth;
  for (index_t s = 0; s < len; ++s) {
    const __m512 vdt = _mm512_set1_ps(dt[s]), vdtu = _mm512_set1_ps(dtu[s]);
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < M; ++i) {
      const __m512 e = exp2_16(_mm512_mul_ps(vdt, a2[i]));
      x[i] = _mm512_fmadd_ps(e, x[i], _mm512_mul_ps(vdtu, _mm512_loadu_ps(B + s * N + i * kWidth)));
      acc = _mm512_fmadd_ps(x[i], _mm512_loadu_ps(C + s * N + i * kWidth), acc);
    }
    _mm512_storeu_ps(rows + s * kWidth, acc);
  }
}

// Backward recompute of one chunk: states xs[j] and decays decay[j] = exp2(dt_j a2) (rows of M * 16) from x0.
template <int M>
inline void recompute_steps(const __m512 (&a2)[M], const float* x0, const float* B, const float* dt, const float* dtu,
                            index_t len, float* xs, float* decay) {
  constexpr index_t N = M * kWidth;
  __m512 x[M];
  for (int i = 0; i < M; ++i) x[i] = _mm512_loadu_ps(x0 + i * kWidth);
  for (index_t j = 0; j < len; ++j) {
    const __m512 vdt = _mm512_set1_ps(dt[j]), vdtu = _mm512_set1_ps(dtu[j]);
    for (int i = 0; i < M; ++i) {
      const index_t o = j * N + i * kWidth;
      const __m512 e = exp2_16(_mm512_mul_ps(vdt, a2[i]));
      x[i] = _mm512_fmadd_ps(e, x[i], _mm512_mul_ps(vdtu, _mm512_loadu_ps(B + o)));
      _mm512_storeu_ps(decay + o, e);
      _mm512_storeu_ps(xs + o, x[i]);
    }
  }
}

// Backward reverse walk of one chunk (j = len-1 .. 0), the generic lane_bwd step in registers: carries
// dx (dL/dx) and dA, accumulates into the dB / dC step rows, and stores the 16-wide partial sums of
// dL/d(dt u) and dL/d(dt) of step j as rows j of rows_dtu / rows_dt.
template <int M>
inline void reverse_steps(__m512 (&dx)[M], __m512 (&dA)[M], const __m512 (&a)[M], const float* x0, const float* xs,
                          const float* decay, const float* B, const float* C, float* dB, float* dC, const float* g,
                          const float* dt, const float* dtu, index_t len, float* rows_dtu, float* rows_dt) {
  constexpr index_t N = M * kWidth;
  for (index_t j = len - 1; j >= 0; --j) {
    const float* xp = j > 0 ? xs + (j - 1) * N : x0;
    const __m512 vg = _mm512_set1_ps(g[j]), vdt = _mm512_set1_ps(dt[j]), vdtu = _mm512_set1_ps(dtu[j]);
    __m512 acc_dtu = _mm512_setzero_ps(), acc_dt = _mm512_setzero_ps();
    for (int i = 0; i < M; ++i) {
      const index_t o = j * N + i * kWidth;
      const __m512 e = _mm512_loadu_ps(decay + o);
      const __m512 dxn = _mm512_fmadd_ps(vg, _mm512_loadu_ps(C + o), dx[i]);
      _mm512_storeu_ps(dC + o, _mm512_fmadd_ps(vg, _mm512_loadu_ps(xs + o), _mm512_loadu_ps(dC + o)));
      _mm512_storeu_ps(dB + o, _mm512_fmadd_ps(dxn, vdtu, _mm512_loadu_ps(dB + o)));
      const __m512 dlog = _mm512_mul_ps(dxn, _mm512_mul_ps(_mm512_loadu_ps(xp + i * kWidth), e));  // d / d(dt a_n)
      dA[i] = _mm512_fmadd_ps(dlog, vdt, dA[i]);
      dx[i] = _mm512_mul_ps(dxn, e);
      acc_dtu = _mm512_fmadd_ps(dxn, _mm512_loadu_ps(B + o), acc_dtu);
      acc_dt = _mm512_fmadd_ps(dlog, a[i], acc_dt);
    }
    _mm512_storeu_ps(rows_dtu + j * kWidth, acc_dtu);
    _mm512_storeu_ps(rows_dt + j * kWidth, acc_dt);
  }
}

}  // namespace avx512
}  // namespace cpu
}  // namespace grainseg

#endif  // __AVX512F__
