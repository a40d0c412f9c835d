// Exhaustive check of the float32 vector tanh (custom_ops/tanh_vec.h, tanh_vec(VecF)) over
// every non-negative float32 below infinity, against the float64 tanh rounded to float32:
// the largest error in ulp of the correctly rounded value (as tests/test_ops.py measures it:
// |y - ref| / spacing(float32(|ref|))), split at |x| = 9 (above it tanh rounds to 1); exact
// oddness (bits of f(-x) = bits of -f(x)), |f| <= 1, tanh(+-0) = +-0, how many tiny x give
// f(x) != x where tanh(x) rounds to x, and monotonicity (how many steps go down, and by how much).
// Also infinities and NaN.
//
//   g++ -O3 -march=native -fno-math-errno -fno-trapping-math -I custom_ops \
//       tools/tanh32_check.cc -o /tmp/tanh32_check && nice -n 5 /tmp/tanh32_check
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "activation.h"

using namespace dpp;

static float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
static uint32_t as_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

int main() {
  static_assert(kTanhVecF, "build with AVX2 + FMA (-march=native on such a machine)");
  constexpr int L = int(sizeof(VecF) / sizeof(float));
  const uint32_t end = 0x7f800000u;  // +inf
  double max_ulp[2] = {0, 0};
  float worst_x[2] = {0, 0};
  double sum_ulp = 0, band_max[7] = {0, 0, 0, 0, 0, 0, 0};
  const float band_end[7] = {0.125f, 0.25f, 0.5f, 1.0f, 2.0f, 4.0f, 9.0f};
  uint64_t n_below = 0, odd_fail = 0, over_one = 0, tiny_fail = 0, tiny_n = 0, down_steps = 0;
  double max_down_ulp = 0;
  float max_down_x = 0, prev = 0;
  for (uint32_t base = 0; base < end; base += L) {
    VecF x, xn;
    for (int i = 0; i < L; ++i) x[i] = as_float(base + i), xn[i] = -x[i];
    const VecF y = tanh_vec(x), yn = tanh_vec(xn);
    for (int i = 0; i < L; ++i) {
      const float xi = x[i], yi = y[i];
      const double ref = std::tanh(double(xi));
      const float rf = float(ref);
      const double sp = double(std::nextafter(rf, 2.0f) - rf);  // spacing(float32(|ref|))
      const double ulp = std::fabs(double(yi) - ref) / (rf > 0 ? sp : std::numeric_limits<float>::denorm_min());
      const int k = xi < 9.0f ? 0 : 1;
      if (ulp > max_ulp[k]) max_ulp[k] = ulp, worst_x[k] = xi;
      if (k == 0) {
        sum_ulp += ulp, ++n_below;
        int j = 0;
        while (xi >= band_end[j]) ++j;
        if (ulp > band_max[j]) band_max[j] = ulp;
      }
      if (as_bits(yn[i]) != (as_bits(yi) ^ 0x80000000u)) ++odd_fail;
      if (!(yi <= 1.0f)) ++over_one;
      if (rf == xi && xi > 0) {
        ++tiny_n;
        if (yi != xi) ++tiny_fail;
      }
      if (base + i > 0 && yi < prev) {
        ++down_steps;
        const double d = (double(prev) - double(yi)) / sp;
        if (d > max_down_ulp) max_down_ulp = d, max_down_x = xi;
      }
      prev = yi;
    }
  }
  VecF s{};
  s[0] = 0.0f, s[1] = -0.0f, s[2] = INFINITY, s[3] = -INFINITY, s[4] = NAN, s[5] = 1e-40f, s[6] = -1e-40f;
  const VecF t = tanh_vec(s);
  std::printf("max error below |x| = 9: %.3f ulp at x = %.9g (mean %.4f ulp)\n", max_ulp[0], worst_x[0],
              sum_ulp / double(n_below));
  std::printf("max error by band:");
  for (int j = 0; j < 7; ++j) std::printf(" [%g, %g) %.3f", j ? band_end[j - 1] : 0.0f, band_end[j], band_max[j]);
  std::printf("\n");
  std::printf("max error from |x| = 9 on: %.3f ulp at x = %.9g\n", max_ulp[1], worst_x[1]);
  std::printf("f(-x) != -f(x) (bits): %llu; f(x) > 1: %llu\n", (unsigned long long)odd_fail,
              (unsigned long long)over_one);
  std::printf("x where tanh(x) rounds to x: %llu, of which f(x) != x: %llu\n", (unsigned long long)tiny_n,
              (unsigned long long)tiny_fail);
  std::printf("steps down between consecutive floats: %llu, largest %.3f ulp at x = %.9g\n",
              (unsigned long long)down_steps, max_down_ulp, max_down_x);
  std::printf("f(0) = %g (signbit %d), f(-0) = %g (signbit %d), f(inf) = %g, f(-inf) = %g, f(nan) = %g, "
              "f(1e-40) = %g, f(-1e-40) = %g\n",
              t[0], int(std::signbit(t[0])), t[1], int(std::signbit(t[1])), t[2], t[3], t[4], t[5], t[6]);
  return 0;
}
