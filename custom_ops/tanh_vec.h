// tanh on whole vectors (simd.h's register width) for the embedding nets' epilogues.
// Plain C++ (no Paddle types).
//
// float32 with AVX2: tanh_fast's algorithm (activation.h: m = expm1(-2|x|), tanh = sign(x) |m| /
// (2 + m)) with the division replaced by a reciprocal estimate (rcpps, 12 bits) and one Newton
// step on the quotient, q = a r0 + (a - d a r0) r0, three multiply-adds. On an AVX2 Zen core the
// tanh epilogue took about 40 % of the embedding forward, GCC kept its loop at 128-bit vectors and
// the profile showed it waiting on the divider. Within 4 ulp of tanh (3.3 seen; tests/test_ops.py
// checks bias_tanh, which uses it).
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
  typedef int32_t VecI __attribute__((vector_size(32)));
  const VecI sign = VecI{} + int32_t(0x80000000u);
  const VecF ax = VecF(VecI(x) & ~sign);
  VecF y = VecF{} - 2.0f * ax;
  y = VecF(_mm256_max_ps(__m256(y), __m256(VecF{} - 20.0f)));  // (arguments below -20 act as -20)
  const VecF n = VecF(_mm256_floor_ps(__m256(y * 1.44269504088896341f + 0.5f)));
  const VecF r = (y - n * 0.693359375f) - n * -2.12194440e-4f;
  const VecF r2 = r * r, r4 = r2 * r2;
  const VecF q = (0.5f + r * (1.0f / 6)) + r2 * (1.0f / 24 + r * (1.0f / 120)) +
                 r4 * ((1.0f / 720 + r * (1.0f / 5040)) + r2 * (1.0f / 40320));
  const VecF p = r + r2 * q;
  const VecF two_n = VecF((__builtin_convertvector(n, VecI) + 127) << 23);  // 2^n, n in [-29, 0]
  const VecF m = two_n * p + (two_n - 1.0f);
  const VecF a = VecF(VecI(m) & ~sign), d = 2.0f + m;  // |m| in [0, 1), d in (1, 2]
  const VecF r0 = VecF(_mm256_rcp_ps(__m256(d)));
  const VecF q0 = a * r0;
  const VecF t = q0 + (a - d * q0) * r0;
  return VecF(VecI(t) | (VecI(x) & sign));
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
