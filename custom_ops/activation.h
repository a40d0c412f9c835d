// y = tanh(z + b) over the rows of a matrix, with its first and second derivatives.
// Plain C++ (no Paddle types). Branch-free so that the loops vectorise (-O3 -march=native,
// no -ffast-math): Paddle 3.3's own float64 tanh on CPU is scalar and ~15x slower.
#pragma once
#include <cstdint>
#include <type_traits>

#include "simd.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace dpp {

// expm1(x) for x <= 0, vectorisable without -ffast-math: x = n ln2 + r with |r| <= ln2/2,
// expm1(r) by its Taylor series to r^13 (truncation < 5e-18 relative), then
// expm1(x) = 2^n expm1(r) + (2^n - 1), exact in the scaling. Arguments below -40 act as -40.
// (always inlined, as tanh_fast below: called out of line from a loop body past GCC's inlining
// budget, as the mixed-precision epilogue's is, it ran once per element and the loop stayed scalar)
__attribute__((always_inline)) inline double expm1_neg(double x) {
  x = x < -40.0 ? -40.0 : x;
  const double n = __builtin_floor(x * 1.4426950408889634073599 + 0.5);
  const double r = (x - n * 6.93145751953125E-1) - n * 1.42860682030941723212E-6;
  // expm1(r) = r + r^2 q(r), q(r) = sum_{k=2..13} r^(k-2) / k!, evaluated by Estrin's scheme
  // (pairs, then powers r^2, r^4, r^8): 4 dependent steps instead of Horner's 12, so that
  // the out-of-order core overlaps the elements of a vector loop
  const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const double p0 = 1.0 / 2 + r * (1.0 / 6), p1 = 1.0 / 24 + r * (1.0 / 120), p2 = 1.0 / 720 + r * (1.0 / 5040),
               p3 = 1.0 / 40320 + r * (1.0 / 362880), p4 = 1.0 / 3628800 + r * (1.0 / 39916800),
               p5 = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
  const double q = (p0 + r2 * p1) + r4 * (p2 + r2 * p3) + r8 * (p4 + r2 * p5);
  const double p = r + r2 * q;
  // 2^n, n in [-58, 0], from the bits of n + 1.5 2^52 (its low mantissa bits hold 2^51 + n):
  // integer add and shift only, which AVX2 has for 64-bit lanes (a double -> int64 conversion
  // needs AVX-512; with it the loops stayed scalar on AVX2 machines, 3x slower than float32)
  const double shifted = n + 6755399441055744.0;
  int64_t bits;
  __builtin_memcpy(&bits, &shifted, 8);
  bits = (bits + 1023) << 52;
  double two_n;
  __builtin_memcpy(&two_n, &bits, 8);
  return two_n * p + (two_n - 1.0);
}

// tanh(x) = sign(x) |m| / (2 + m) with m = expm1(-2|x|): one division, no cancellation for
// small |x|, branch-free so that the loops vectorise; within 3 ulp of tanh (checked against
// long double over [-20, 20] and 1e-12 <= |x| <= 100 in tests/test_ops.py).
__attribute__((always_inline)) inline double tanh_fast(double x) {
  const double ax = x < 0.0 ? -x : x;
  const double m = expm1_neg(-2.0 * ax);
  const double t = (m < 0.0 ? -m : m) / (2.0 + m);
  return x < 0.0 ? -t : t;
}

// The same in float32 arithmetic throughout (a float64 round trip halves the vector width):
// x = n ln2 + r with ln2 split for float (Cody-Waite), expm1(r) by its Taylor series to r^8
// (truncation < 1e-9 relative for |r| <= ln2/2), 2^n from the exponent bits. Arguments below
// -20 act as -20 (tanh is 1 in float32 from |x| = 9.1 on). Within 4 ulp of tanh in float32
// (tests/test_ops.py).
__attribute__((always_inline)) inline float expm1_neg(float x) {
  x = x < -20.0f ? -20.0f : x;
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  const float r2 = r * r, r4 = r2 * r2;  // Estrin's scheme, as in the float64 version
  const float q = (0.5f + r * (1.0f / 6)) + r2 * (1.0f / 24 + r * (1.0f / 120)) +
                  r4 * ((1.0f / 720 + r * (1.0f / 5040)) + r2 * (1.0f / 40320));
  const float p = r + r2 * q;
  union { float f; int32_t i; } u{0.0f};
  u.i = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-29, 0]
  return u.f * p + (u.f - 1.0f);
}

__attribute__((always_inline)) inline float tanh_fast(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float m = expm1_neg(-2.0f * ax);
  const float t = (m < 0.0f ? -m : m) / (2.0f + m);
  return x < 0.0f ? -t : t;
}

// tanh(z[c]) for c < n by whole vectors V (tanh_vec.h, included at the end of this file)
template <typename T, typename V>
void tanh_row(const T* z, T* y, int64_t n);

// y[r, c] = tanh(z[r, c] + b[c]); z, y: rows x cols. float32 goes through tanh_vec.h (as the
// embedding nets do), so tests/test_ops.py's ulp check covers that function too.
template <typename T>
void bias_tanh_forward(const T* __restrict z, const T* __restrict b, T* __restrict y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* zr = z + r * cols;
    T* yr = y + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = zr[c] + b[c];
    if (std::is_same<T, float>::value && kTanhVecF) {
      tanh_row<T, typename std::conditional<std::is_same<T, float>::value, VecF, VecD>::type>(yr, yr, cols);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) yr[c] = tanh_fast(yr[c]);
    }
  }
}

// gz = gy (1 - y^2); gb = column sums of gz (reduced per thread, then summed)
template <typename T>
void bias_tanh_backward(const T* __restrict y, const T* __restrict gy, T* __restrict gz, T* __restrict gb,
                        int64_t rows, int64_t cols, T* __restrict scratch, int nthreads) {
  for (int64_t k = 0; k < int64_t(nthreads) * cols; ++k) scratch[k] = T(0);
#pragma omp parallel num_threads(nthreads) if (rows * cols > 32768)
  {
#ifdef _OPENMP
    T* acc = scratch + int64_t(omp_get_thread_num()) * cols;
#else
    T* acc = scratch;
#endif
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = y + r * cols;
      const T* gr = gy + r * cols;
      T* zr = gz + r * cols;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const T v = gr[c] * (T(1) - yr[c] * yr[c]);
        zr[c] = v;
        acc[c] += v;
      }
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    T s = T(0);
    for (int t = 0; t < nthreads; ++t) s += scratch[int64_t(t) * cols + c];
    gb[c] = s;
  }
}

// The backward is gz = gy (1 - y^2), gb = sum_r gz. With cotangents ggz (rows x cols) and
// ggb (cols): a = ggz + ggb; d/dgy: gg_y = a (1 - y^2); d/dy: g_y = -2 y gy a.
template <typename T>
void bias_tanh_double_backward(const T* __restrict y, const T* __restrict gy, const T* __restrict ggz,
                               const T* __restrict ggb, T* __restrict gg_y, T* __restrict g_y,
                               int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      const T a = (ggz ? ggz[o + c] : T(0)) + (ggb ? ggb[c] : T(0));
      const T yy = y[o + c];
      gg_y[o + c] = a * (T(1) - yy * yy);
      g_y[o + c] = T(-2) * yy * gy[o + c] * a;
    }
  }
}

}  // namespace dpp

#include "tanh_vec.h"  // (tanh_row; it needs tanh_fast above)
