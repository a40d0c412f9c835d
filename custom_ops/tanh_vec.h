// tanh on whole vectors (simd.h's register width) for the embedding nets' epilogues.
// Plain C++ (no Paddle types).
//
// float32 with AVX2: no exponential and no division. tanh x = 2 u / (1 + u^2) with u = tanh(x / 2)
// ~= M / E, M = x P(s), E = Q(s), s = x^2, P of degree 2, Q of degree 3 (a rational fitted so that
// u's relative error over cosh x stays below 1e-8, tools/tanh32_fit.py), x clamped to [-9, 9];
// so tanh x = 2 M E / (E^2 + M^2). The doubling formula damps u's errors by 1 / cosh x, which
// a direct x P(s) / Q(s) of tanh lacks near 1: a [9/8] one took about as many operations and
// was 5.5 ulp off in float32 arithmetic even with an exact division. The quotient: a reciprocal estimate (rcpps, 12 bits), one
// Newton step on it and one on the quotient (with a single step the error was 4.3 ulp).
// 19 vector operations against the 29 of tanh_fast's algorithm (activation.h: expm1(-2|x|),
// range reduction, degree-8 polynomial, 2^n from bits, |m| / (2 + m)). Exhaustively over all
// float32 (tools/tanh32_check.cc): at most 3.9 ulp from tanh (mean 0.07 ulp; tanh_fast's
// vector form had 3.6, mean 0.86), exactly odd, |tanh| <= 1, tanh x = x wherever tanh x rounds
// to x, NaN stays NaN; not exactly monotone (steps down of at most 4 ulp between neighbours).
// tests/test_ops.py checks bias_tanh, which uses it, to 4 ulp.
// float64 and other targets: tanh_fast lane by lane (bit for bit the scalar function); there the
// kernels keep their element loops (kTanhVecF false).
#pragma once
#include <cstdint>

#include "activation.h"
#include "simd.h"
#if DPP_TANH_VEC_F
#include <immintrin.h>
#endif

namespace dpp {

template <typename V>
__attribute__((always_inline)) inline V tanh_lanes(V x) {
  for (int i = 0; i < int(sizeof(V) / sizeof(x[0])); ++i) x[i] = tanh_fast(x[i]);
  return x;
}

__attribute__((always_inline)) inline VecD tanh_vec(VecD x) { return tanh_lanes(x); }

#if DPP_TANH_VEC_F
__attribute__((always_inline)) inline VecF tanh_vec(VecF x) {
  const __m256 c = _mm256_set1_ps(9.0f), one = _mm256_set1_ps(1.0f);
  // x clamped to [-9, 9] (max and min return their second operand when one is NaN: NaN stays NaN)
  const __m256 xc = _mm256_min_ps(c, _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), c), __m256(x)));
  const __m256 s = _mm256_mul_ps(xc, xc);
  // u = M / E ~ tanh(x / 2): M = x P(s) = x + x s (p1 + p2 s), E = Q(s) (tools/tanh32_fit.py)
  const __m256 pt = _mm256_fmadd_ps(s, _mm256_set1_ps(1.141872563e-04f), _mm256_set1_ps(2.977076545e-02f));
  const __m256 M = _mm256_fmadd_ps(_mm256_mul_ps(xc, s), pt, xc);
  __m256 E = _mm256_fmadd_ps(s, _mm256_set1_ps(2.455145932e-06f), _mm256_set1_ps(2.412459580e-03f));
  E = _mm256_fmadd_ps(s, E, _mm256_set1_ps(2.262081206e-01f));
  E = _mm256_fmadd_ps(s, E, _mm256_set1_ps(2.0f));
  // tanh x = 2 u / (1 + u^2) = a / d, a = 2 M E, d = E^2 + M^2 in [4, 2.9e3]
  const __m256 a = _mm256_mul_ps(_mm256_add_ps(M, M), E);
  const __m256 d = _mm256_fmadd_ps(E, E, _mm256_mul_ps(M, M));
  // 1 / d: rcpps (12 bits), one Newton step on the reciprocal, one on the quotient
  __m256 r = _mm256_rcp_ps(d);
  r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, one), r);
  const __m256 q0 = _mm256_mul_ps(a, r);
  const __m256 e = _mm256_fmsub_ps(d, q0, a);  // d q0 - a, so that tanh(-0) = -0 below
  return VecF(_mm256_fnmadd_ps(e, r, q0));
}
#else
__attribute__((always_inline)) inline VecF tanh_vec(VecF x) { return tanh_lanes(x); }
#endif

// y[c] = tanh(z[c]) for c < n by whole vectors (the last one partial), so that every element
// of a row goes through the same function
template <typename T, typename V>
inline void tanh_row(const T* z, T* y, int64_t n) {  // (declared in activation.h)
  constexpr int L = int(sizeof(V) / sizeof(T));
  int64_t c = 0;
  for (; c + L <= n; c += L) {
    V v;
    __builtin_memcpy(&v, z + c, sizeof(V));
    v = tanh_vec(v);
    __builtin_memcpy(y + c, &v, sizeof(V));
  }
  if (c < n) {
    V v = V{};
    __builtin_memcpy(&v, z + c, sizeof(T) * (n - c));
    v = tanh_vec(v);
    __builtin_memcpy(y + c, &v, sizeof(T) * (n - c));
  }
}

}  // namespace dpp
