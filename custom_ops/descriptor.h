// The se_e2_a descriptor D = T T<^T of every atom, with its derivatives. Plain C++ (no Paddle
// types), float64 or float32.
//
// From T (ng x 4, the contraction of the embedding with R~): D[g, a] = sum_c T[g, c] T[a, c],
// a < A (axis_neuron). Paddle's batched matmul on these 100 x 4 x 16 products costs more than
// the whole tabulated embedding; here it is a few thousand FMAs per atom.
//   backward: gT[x, c] = sum_a gD[x, a] T[a, c] + [x < A] sum_g gD[g, x] T[g, c]
//   its derivative along gD (linear):  ggD[g, a] = sum_c A[g, c] T[a, c] + sum_c A[a, c] T[g, c]
//   and along T: gT2[x, c] = [x < A] sum_g gD[g, x] A[g, c] + sum_{g < A} gD[x, g] A[g, c]
// for a cotangent A of gT. Shapes: T, gT, A [nat, ng, 4]; D, gD, ggD [nat, ng, A].
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace dpp {

template <typename T>
inline void descriptor_forward(const T* Tm, int64_t nat, int ng, int na, T* D) {
#pragma omp parallel
  {
    std::vector<T> tt(4 * size_t(na));  // T<^T: 4 x na
#pragma omp for schedule(static)
    for (int64_t i = 0; i < nat; ++i) {
      const T* t = Tm + i * ng * 4;
      for (int a = 0; a < na; ++a)
        for (int c = 0; c < 4; ++c) tt[c * na + a] = t[a * 4 + c];
      T* d = D + i * ng * na;
      for (int g = 0; g < ng; ++g) {
        const T t0 = t[g * 4], t1 = t[g * 4 + 1], t2 = t[g * 4 + 2], t3 = t[g * 4 + 3];
        T* dg = d + g * na;
#pragma omp simd
        for (int a = 0; a < na; ++a) dg[a] = t0 * tt[a] + t1 * tt[na + a] + t2 * tt[2 * na + a] + t3 * tt[3 * na + a];
      }
    }
  }
}

// gT = sum_a G[x, a] U[a, c] + [x < A] sum_g G[g, x] U[g, c]  (the backward with (G, U) = (gD, T);
// with (G, U) = (gD, A) it is the derivative along T of the T backward)
template <typename T>
inline void descriptor_backward(const T* U, const T* G, int64_t nat, int ng, int na, T* gT) {
#pragma omp parallel
  {
    std::vector<T> ut(4 * size_t(na)), acc(4 * size_t(na));  // U<^T and sum_g G[g, a] U[g, c]: c x na
#pragma omp for schedule(static)
    for (int64_t i = 0; i < nat; ++i) {
      const T* u = U + i * ng * 4;
      const T* gd = G + i * ng * na;
      T* o = gT + i * ng * 4;
      for (int a = 0; a < na; ++a)
        for (int c = 0; c < 4; ++c) ut[c * na + a] = u[a * 4 + c];
      std::fill(acc.begin(), acc.end(), T(0));
      T* __restrict a0 = acc.data();
      T* __restrict a1 = a0 + na;
      T* __restrict a2 = a1 + na;
      T* __restrict a3 = a2 + na;
      const T* __restrict t0 = ut.data();
      const T* __restrict t1 = t0 + na;
      const T* __restrict t2 = t1 + na;
      const T* __restrict t3 = t2 + na;
      for (int g = 0; g < ng; ++g) {
        const T* __restrict row = gd + g * na;
        const T u0 = u[g * 4], u1 = u[g * 4 + 1], u2 = u[g * 4 + 2], u3 = u[g * 4 + 3];
        T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int a = 0; a < na; ++a) {
          const T r = row[a];
          s0 += r * t0[a];
          s1 += r * t1[a];
          s2 += r * t2[a];
          s3 += r * t3[a];
          a0[a] += r * u0;
          a1[a] += r * u1;
          a2[a] += r * u2;
          a3[a] += r * u3;
        }
        o[g * 4] = s0;
        o[g * 4 + 1] = s1;
        o[g * 4 + 2] = s2;
        o[g * 4 + 3] = s3;
      }
      for (int a = 0; a < na; ++a)
        for (int c = 0; c < 4; ++c) o[a * 4 + c] += acc[c * na + a];
    }
  }
}

// ggD[g, a] = sum_c A[g, c] T[a, c] + A[a, c] T[g, c]
template <typename T>
inline void descriptor_double_backward(const T* Tm, const T* A, int64_t nat, int ng, int na, T* ggD) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nat; ++i) {
    const T* t = Tm + i * ng * 4;
    const T* a4 = A + i * ng * 4;
    T* o = ggD + i * ng * na;
    for (int g = 0; g < ng; ++g)
      for (int a = 0; a < na; ++a) {
        T s = 0;
        for (int c = 0; c < 4; ++c) s += a4[g * 4 + c] * t[a * 4 + c] + a4[a * 4 + c] * t[g * 4 + c];
        o[g * na + a] = s;
      }
  }
}

}  // namespace dpp
