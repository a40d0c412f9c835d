// Rounding to a narrower floating-point format (mixed precision): IEEE round-to-nearest-even to a
// format of p significant bits whose normal numbers start at 2^emin (below: its subnormal grid,
// spacing 2^(emin - p + 1)) and whose largest finite value is `top` (beyond it: +-inf). NaN and
// +-inf stay. Plain C++; the Paddle binding is round_format_op.cc, the plain-Paddle twin
// deepmd_paddle/kernels/rounding.py.
#pragma once
#include <cmath>
#include <cstdint>

namespace dpp {

struct RoundFormat {
  int p;       // significant bits (bfloat16 8, float16 11)
  int emin;    // exponent of the smallest normal number
  double top;  // largest finite value
};

inline double round_to_format(double x, const RoundFormat& f) {
  const double a = std::fabs(x);
  if (!(a < HUGE_VAL) || a == 0.0) return x;  // NaN, +-inf, +-0
  int e = 0;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1): the binade's exponent is e - 1 (exact)
  const int k = (e - 1 < f.emin ? f.emin : e - 1) - (f.p - 1);
  const double ulp = std::ldexp(1.0, k);
  double r = std::nearbyint(a / ulp) * ulp;  // a / ulp exact; nearbyint: to nearest, ties to even
  if (r > f.top) r = HUGE_VAL;
  return std::copysign(r, x);
}

// delta[i] = round(x[i]) - x[i] (exact: Sterbenz), so that x + delta is the rounded value; 0 where
// x[i] is NaN or +-inf (x + 0 keeps them; inf - inf would be NaN)
template <typename T>
void round_delta(const T* x, T* delta, int64_t n, const RoundFormat& f) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(x[i]);
    delta[i] = std::fabs(v) < HUGE_VAL ? T(round_to_format(v, f) - v) : T(0);
  }
}

}  // namespace dpp
