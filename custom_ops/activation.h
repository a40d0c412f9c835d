// y = tanh(z + b) over the rows of a matrix, with its first and second derivatives.
// Plain C++ (no Paddle types). Written so that GCC vectorises exp with glibc's libmvec
// (-O3 -ffast-math): Paddle 3.3's own float64 tanh on CPU is scalar and ~15x slower.
#pragma once
#include <cmath>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace dpp {

template <typename T>
inline T tanh_fast(T x) {
  // tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|): no overflow for any x
  const T ax = x < T(0) ? -x : x;
  const T e = std::exp(T(-2) * ax);
  const T t = (T(1) - e) / (T(1) + e);
  return x < T(0) ? -t : t;
}

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
