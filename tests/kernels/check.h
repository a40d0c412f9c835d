// A minimal harness for the kernel tests: groups of checks registered by name, run by main.cc
// (`kernel_tests GROUP`), each failed check printed with its location; the exit code is the
// number of failures (capped). tests/test_kernels.py compiles and runs it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kt {

inline int& failures() {
  static int n = 0;
  return n;
}

inline long& checks() {  // checks run, so that a group that checks nothing is noticed
  static long n = 0;
  return n;
}

struct Group {
  const char* name;
  void (*run)();
};

inline std::vector<Group>& registry() {
  static std::vector<Group> r;
  return r;
}

struct Register {
  Register(const char* name, void (*run)()) { registry().push_back({name, run}); }
};

#define KT_GROUP(name)                                      \
  static void kt_group_##name();                            \
  static kt::Register kt_register_##name(#name, kt_group_##name); \
  static void kt_group_##name()

inline void fail(const char* file, int line, const std::string& what) {
  if (++failures() <= 20) std::printf("FAIL %s:%d: %s\n", file, line, what.c_str());
}

#define KT_CHECK(cond, what)                                         \
  do {                                                               \
    ++kt::checks();                                                  \
    if (!(cond)) kt::fail(__FILE__, __LINE__, std::string(#cond) + " -- " + (what)); \
  } while (0)

// |a - b| <= atol + rtol |b| (NaN fails).
#define KT_CLOSE(a, b, rtol, atol, what)                                                          \
  do {                                                                                            \
    const double kt_a = double(a), kt_b = double(b);                                              \
    ++kt::checks();                                                                               \
    if (!(std::fabs(kt_a - kt_b) <= (atol) + (rtol) * std::fabs(kt_b)))                          \
      kt::fail(__FILE__, __LINE__,                                                                \
               std::string(what) + ": " + std::to_string(kt_a) + " vs " + std::to_string(kt_b) + \
                   " (diff " + std::to_string(kt_a - kt_b) + ")");                                \
  } while (0)

// Largest |a - b| / (atol + rtol |b|) over two arrays: <= 1 means all close.
template <typename A, typename B>
double worst(const A& a, const B& b, double rtol, double atol) {
  double w = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t k = 0; k < a.size() && k < b.size(); ++k) {
    const double d = std::fabs(double(a[k]) - double(b[k]));
    const double e = d == 0.0 ? 0.0 : d / (atol + rtol * std::fabs(double(b[k])));  // tolerance 0: exact
    w = std::isnan(e) ? INFINITY : std::max(w, e);
  }
  return w;
}

#define KT_ALL_CLOSE(a, b, rtol, atol, what)                                                   \
  do {                                                                                         \
    const double kt_w = kt::worst(a, b, rtol, atol);                                           \
    ++kt::checks();                                                                            \
    if (!(kt_w <= 1.0))                                                                        \
      kt::fail(__FILE__, __LINE__, std::string(what) + ": worst error / tolerance = " + std::to_string(kt_w)); \
  } while (0)

// splitmix64 and Box-Muller: reproducible on every platform, and light to compile.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53; }
  double normal() {
    const double u = uniform(1e-300, 1.0), v = uniform(0.0, 1.0);
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v);
  }
  int integer(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }  // inclusive
  template <typename T>
  std::vector<T> normals(size_t n, double scale = 1.0) {
    std::vector<T> v(n);
    for (auto& x : v) x = T(scale * normal());
    return v;
  }
};

template <typename A, typename B>
double dot(const A& a, const B& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += double(a[k]) * double(b[k]);
  return s;
}

}  // namespace kt
