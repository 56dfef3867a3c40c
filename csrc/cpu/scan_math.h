// Elementwise math of the CPU scan kernels, written so that GCC/Clang vectorise loops calling it.
//
// glibc's expf / log1pf are scalar calls that block vectorisation of the state loop; the float versions
// below are branch-free Cephes-style polynomials (about 1-2 ulp over the range the scan uses) that the
// compiler turns into SIMD code with -O3 -fno-trapping-math (setup.py) at any -march: without
// -fno-trapping-math GCC will not if-convert the clamps below on targets without AVX-512 masks and
// leaves the whole state loop scalar (10x slower on an AVX2 build).  double keeps the libm functions: the fp64 path
// exists for gradcheck, where exactness matters more than speed.
#pragma once

#include "cpu/scan_kernel_ns.h"

#include <cmath>
#include <cstdint>

namespace grainseg {
namespace cpu {
namespace GRAINSEG_KERNEL_NS {

// The functions below are forced inline: a loop that calls one out of line stays scalar (GCC's inliner
// gave up on exp_f32 in load_chunk's softplus' loop, leaving a scalar call and divide per step).
#define GRAINSEG_MATH_INLINE inline __attribute__((always_inline))

// Bit casts (a builtin so that the vectoriser sees plain register moves, unlike std::memcpy).
GRAINSEG_MATH_INLINE float bits_to_float(int32_t i) { return __builtin_bit_cast(float, i); }
GRAINSEG_MATH_INLINE int32_t float_to_bits(float f) { return __builtin_bit_cast(int32_t, f); }

// exp(x): range reduction x = k ln2 + r, |r| <= ln2 / 2, degree-6 polynomial for exp(r), 2^k by
// building the exponent bits.  The argument is clamped to [-87.3, 88] (results ~1e-38 .. 1.6e38);
// NaN propagates.
GRAINSEG_MATH_INLINE float exp_f32(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (exact for |v| < 2^22): plain arithmetic that
  // vectorises on every x86 level, where nearbyint needs SSE4.1.
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  return e * bits_to_float((static_cast<int32_t>(k) + 127) << 23);
}

// log(x) for finite x > 0 (Cephes logf): x = m 2^e with m in [sqrt(1/2), sqrt(2)), polynomial in m - 1.
GRAINSEG_MATH_INLINE float log_f32(float x) {
  const int32_t bits = float_to_bits(x);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  float m = bits_to_float((bits & 0x807fffff) | 0x3f000000);  // in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  return m + y + e * 0.693359375f;
}

template <typename T>
GRAINSEG_MATH_INLINE T scan_exp(T x) {
  return std::exp(x);
}
template <>
GRAINSEG_MATH_INLINE float scan_exp<float>(float x) {
  return exp_f32(x);
}

// softplus(x) = log(1 + e^x), linear above 20 like torch.nn.functional.softplus.  With v = e^x and
// w = 1 + v (rounded), log1p(v) = log(w) + (v - (w - 1)) / w corrects the rounding of w to first order
// (exact to rounding even when v is tiny).  Both sides of every select are computed unconditionally
// (no division under a branch) so loops over it vectorise.
template <typename T>
GRAINSEG_MATH_INLINE T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

// d softplus / dx = sigmoid(x) (1 above the linear threshold, as torch's backward).
template <typename T>
GRAINSEG_MATH_INLINE T softplus_grad(T x) {
  const T s = T(1) / (T(1) + scan_exp<T>(-x));
  return x > T(20) ? T(1) : s;
}

// softplus(x) and its derivative together, from one exponential and one division (the backward needs
// both): sigmoid(x) = v / w.
template <typename T>
GRAINSEG_MATH_INLINE T softplus_and_grad(T x, T& grad) {
  grad = softplus_grad(x);
  return softplus(x);
}
template <>
GRAINSEG_MATH_INLINE float softplus_and_grad<float>(float x, float& grad) {
  const float v = exp_f32(x);
  const float w = 1.0f + v;
  const float rw = 1.0f / w;
  const float sp = log_f32(w) + (v - (w - 1.0f)) * rw;
  grad = x > 20.0f ? 1.0f : v * rw;
  return x > 20.0f ? x : sp;
}
// fp32 softplus alone is the same expression (the unused derivative folds away), so the backward's
// recomputed dt is bit for bit the forward's.
template <>
GRAINSEG_MATH_INLINE float softplus<float>(float x) {
  float unused;
  return softplus_and_grad<float>(x, unused);
}

}  // namespace GRAINSEG_KERNEL_NS
}  // namespace cpu
}  // namespace grainseg
