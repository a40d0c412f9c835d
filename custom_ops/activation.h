// y = tanh(z + b) over the rows of a matrix, with its first and second derivatives.
// Plain C++ (no Paddle types). Branch-free so that the loops vectorise (-O3 -march=native,
// no -ffast-math): Paddle 3.3's own float64 tanh on CPU is scalar and ~15x slower.
#pragma once
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace dpp {

// exp(x) for x <= 0, vectorisable without -ffast-math: x = n ln2 + r, |r| <= ln2/2,
// exp(r) from Cephes' Pade form 1 + 2r P(r^2) / (Q(r^2) - r P(r^2)), then 2^n through the
// exponent bits. Relative error ~2e-16 in double; arguments below -700 give 0.
inline double exp_neg(double x) {
  x = x < -700.0 ? -700.0 : x;
  const double n = __builtin_floor(x * 1.4426950408889634073599 + 0.5);
  const double r = (x - n * 6.93145751953125E-1) - n * 1.42860682030941723212E-6;
  const double r2 = r * r;
  const double p = r * ((1.26177193074810590878E-4 * r2 + 3.02994407707441961300E-2) * r2 + 9.99999999999999999910E-1);
  const double q = ((3.00198505138664455042E-6 * r2 + 2.52448340349684104192E-3) * r2 + 2.27265548208155028766E-1) * r2 +
                   2.00000000000000000009E0;
  const double e = 1.0 + 2.0 * p / (q - p);
  union { double d; int64_t i; } u{e};
  u.i += static_cast<int64_t>(n) << 52;
  return u.d;
}

// tanh with ~1 ulp accuracy: a rational minimax form below |x| = 0.625 (Cephes), and
// (1 - e) / (1 + e) with e = exp(-2|x|) above it; branch-free so that the loops vectorise.
inline double tanh_fast(double x) {
  const double ax = x < 0.0 ? -x : x;
  const double x2 = x * x;
  const double small = x + x * x2 * (((-9.64399179425052238628E-1 * x2 - 9.92877231001918586564E1) * x2 -
                                      1.61468768441708447952E3) /
                                     (((x2 + 1.12811678491632931402E2) * x2 + 2.23548839060100448583E3) * x2 +
                                      4.84406305325125486048E3));
  const double e = exp_neg(-2.0 * ax);
  double big = (1.0 - e) / (1.0 + e);
  big = x < 0.0 ? -big : big;
  return ax < 0.625 ? small : big;
}

inline float tanh_fast(float x) { return static_cast<float>(tanh_fast(static_cast<double>(x))); }

// y[r, c] = tanh(z[r, c] + b[c]); z, y: rows x cols
template <typename T>
void bias_tanh_forward(const T* __restrict z, const T* __restrict b, T* __restrict y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* zr = z + r * cols;
    T* yr = y + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = tanh_fast(zr[c] + b[c]);
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
