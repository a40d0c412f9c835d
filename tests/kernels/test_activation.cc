// tanh_fast and the bias_tanh kernels (activation.h) against std::tanh and naive loops.
#include <cfloat>
#include <cmath>
#include <vector>

#include "activation.h"
#include "check.h"

KT_GROUP(activation) {
  // within 3 ulp of tanh (long double) over a wide range, exact sign and limits
  double worst_ulp = 0;
  for (int k = -200000; k <= 200000; ++k) {
    const double x = k * 1e-4;  // [-20, 20]
    const long double want = tanhl((long double)x);
    const double ulp = std::nextafter(std::fabs(double(want)), INFINITY) - std::fabs(double(want));
    if (want != 0) worst_ulp = std::max(worst_ulp, double(std::fabs((long double)dpp::tanh_fast(x) - want)) / ulp);
  }
  for (double x = 1e-12; x < 100; x *= 1.37) {
    for (double s : {x, -x}) {
      const long double want = tanhl((long double)s);
      const double ulp = std::nextafter(std::fabs(double(want)), INFINITY) - std::fabs(double(want));
      worst_ulp = std::max(worst_ulp, double(std::fabs((long double)dpp::tanh_fast(s) - want)) / ulp);
    }
  }
  KT_CHECK(worst_ulp <= 3.0, "tanh_fast within 3 ulp, got " + std::to_string(worst_ulp));
  KT_CHECK(dpp::tanh_fast(0.0) == 0.0 && dpp::tanh_fast(1e3) == 1.0 && dpp::tanh_fast(-1e3) == -1.0, "tanh limits");
  KT_CLOSE(dpp::tanh_fast(0.5f), std::tanh(0.5f), 1e-7, 0.0, "float tanh_fast");
  for (double x : {-0.1, -1.0, -7.5, -39.0, -45.0})
    KT_CLOSE(dpp::expm1_neg(x), std::expm1(std::max(x, -40.0)), 4e-16, 0.0, "expm1_neg");

  // bias_tanh: forward, backward (gz, gb), double backward, against naive loops
  kt::Rng rng(41);
  for (int rows : {3, 400}) {  // 400 x 100: above the serial threshold (threads)
    const int cols = rows == 3 ? 5 : 100;
    const std::vector<double> z = rng.normals<double>(rows * cols, 2.0), b = rng.normals<double>(cols);
    std::vector<double> y(z.size()), y_want(z.size());
    dpp::bias_tanh_forward<double>(z.data(), b.data(), y.data(), rows, cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) y_want[r * cols + c] = std::tanh(z[r * cols + c] + b[c]);
    KT_ALL_CLOSE(y, y_want, 1e-15, 1e-16, "bias_tanh forward");
    const std::vector<double> gy = rng.normals<double>(z.size());
    std::vector<double> gz(z.size()), gb(cols), scratch(4 * cols), gz_want(z.size()), gb_want(cols, 0.0);
    dpp::bias_tanh_backward<double>(y.data(), gy.data(), gz.data(), gb.data(), rows, cols, scratch.data(), 4);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const double v = gy[r * cols + c] * (1 - y[r * cols + c] * y[r * cols + c]);
        gz_want[r * cols + c] = v;
        gb_want[c] += v;
      }
    KT_ALL_CLOSE(gz, gz_want, 1e-15, 1e-16, "bias_tanh backward gz");
    KT_ALL_CLOSE(gb, gb_want, 1e-13, 1e-13, "bias_tanh backward gb");
    // double backward along (ggz, ggb): finite differences of the backward in y and gy
    const std::vector<double> ggz = rng.normals<double>(z.size()), ggb = rng.normals<double>(cols);
    std::vector<double> gg_y(z.size()), g_y(z.size());
    dpp::bias_tanh_double_backward<double>(y.data(), gy.data(), ggz.data(), ggb.data(), gg_y.data(), g_y.data(), rows,
                                           cols);
    // L(y, gy) = <ggz, gz> + <ggb, gb> of the backward: gg_y = dL/dgy, g_y = dL/dy
    auto loss = [&](const std::vector<double>& yy, const std::vector<double>& gyy) {
      std::vector<double> a(z.size()), bb(cols), sc(4 * cols);
      dpp::bias_tanh_backward<double>(yy.data(), gyy.data(), a.data(), bb.data(), rows, cols, sc.data(), 4);
      return kt::dot(ggz, a) + kt::dot(ggb, bb);
    };
    const std::vector<double> v = rng.normals<double>(z.size());
    const double h = 1e-4;  // L is quadratic in y and linear in gy: central differences are exact
    std::vector<double> p = y, m = y;
    for (size_t k = 0; k < v.size(); ++k) {
      p[k] += h * v[k];
      m[k] -= h * v[k];
    }
    KT_CLOSE(kt::dot(g_y, v), (loss(p, gy) - loss(m, gy)) / (2 * h), 1e-8, 1e-8, "double backward in y");
    p = gy, m = gy;
    for (size_t k = 0; k < v.size(); ++k) {
      p[k] += h * v[k];
      m[k] -= h * v[k];
    }
    KT_CLOSE(kt::dot(gg_y, v), (loss(y, p) - loss(y, m)) / (2 * h), 1e-8, 1e-8, "double backward in gy");
  }
}
