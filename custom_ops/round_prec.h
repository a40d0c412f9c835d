// Rounding to a narrower floating-point format for mixed precision (DeePMD-kit's
// training/mixed_precision): the nets' operands and results are rounded to compute_prec at the
// points where DeePMD-kit casts, while storage and accumulation stay in the output precision.
// A product of rounded operands accumulated in float32 (and then rounded) is what bfloat16
// dot-product instructions compute. Plain C++ (no Paddle types).
//
// Round to nearest, ties to even, with the target's exponent range: bfloat16 (8-bit exponent,
// 8-bit significand), IEEE float16 (5-bit exponent, 11-bit significand, subnormals from
// 2^-24, overflow to inf beyond 65504) and float32 (for float64 storage); NaN stays NaN.
#pragma once
#include <cstdint>
#include <cstring>

namespace dpp {

enum RoundMode : int { kRoundNone = 0, kRoundBF16 = 1, kRoundF16 = 2, kRoundF32 = 3 };

// The roundings, without branches, so that the kernels' loops over a layer's outputs
// vectorise (integer bit operations and selects; the exponent of a float16 spacing from the
// value's exponent bits); round_to below dispatches to them: one definition for every rounding
// (tests/test_mixed_kernels.py holds the fused kernels to a NumPy definition, and
// tests/test_mixed_precision.py the operator built on round_v to IEEE on edge cases).
__attribute__((always_inline)) inline float bf16_v(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const uint32_t o = (u & 0x7fffffffu) > 0x7f800000u ? u : r;  // NaN stays
  float y;
  std::memcpy(&y, &o, 4);
  return y;
}

__attribute__((always_inline)) inline double bf16_v(double x) {
  uint64_t u;
  std::memcpy(&u, &x, 8);
  const uint64_t r = (u + ((uint64_t(1) << 44) - 1) + ((u >> 45) & 1u)) & ~((uint64_t(1) << 45) - 1);
  double y;
  std::memcpy(&y, &r, 8);
  const double ax = x < 0 ? -x : x, ay = y < 0 ? -y : y;
  const double sub = __builtin_nearbyint(x * 0x1p133) * 0x1p-133;  // bfloat16 subnormals
  y = ax < 1.1754943508222875e-38 ? sub : y;
  const double inf = x < 0 ? -__builtin_inf() : __builtin_inf();
  return ay > 3.3895313892515355e38 && ax == ax ? inf : y;
}

template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> { typedef uint32_t U; static constexpr int kMant = 23, kBias = 127; static constexpr U kExpMask = 0xff; };
template <>
struct FloatBits<double> { typedef uint64_t U; static constexpr int kMant = 52, kBias = 1023; static constexpr U kExpMask = 0x7ff; };

template <typename T>
__attribute__((always_inline)) inline T f16_v(T x) {
  typedef FloatBits<T> B;
  typename B::U u;
  std::memcpy(&u, &x, sizeof(T));
  const int e = int((u >> B::kMant) & B::kExpMask) - B::kBias;  // floor(log2 |x|) for normal x
  const int q = (e < -14 ? -14 : e) - 10;                       // the float16 spacing is 2^q
  const typename B::U su = typename B::U(B::kBias - q) << B::kMant, iu = typename B::U(B::kBias + q) << B::kMant;
  T scale, inv;
  std::memcpy(&scale, &su, sizeof(T));
  std::memcpy(&inv, &iu, sizeof(T));
  const T y = T(__builtin_nearbyint(double(x * scale))) * inv;
  const T ax = x < 0 ? -x : x;
  const T inf = T(x < 0 ? -__builtin_inf() : __builtin_inf());
  return ax >= T(65520) ? inf : (ax == ax ? y : x);
}

template <typename T, int M>
__attribute__((always_inline)) inline T round_v(T x) {
  if constexpr (M == kRoundBF16) return bf16_v(x);
  else if constexpr (M == kRoundF16) return f16_v(x);
  else if constexpr (M == kRoundF32) return T(float(x));
  else return x;
}

template <typename T>
inline T round_to(T x, int mode) {  // (the mode at run time: packing weights, a net's inputs)
  switch (mode) {
    case kRoundBF16: return round_v<T, kRoundBF16>(x);
    case kRoundF16: return round_v<T, kRoundF16>(x);
    case kRoundF32: return round_v<T, kRoundF32>(x);
    default: return x;
  }
}

}  // namespace dpp
