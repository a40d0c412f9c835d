// The tabulated embedding (tabulate.h) against direct evaluation of its polynomials, and the
// descriptor product D = T T<^T (descriptor.h) against naive loops and finite differences.
#include <cmath>
#include <vector>

#include "check.h"
#include "descriptor.h"
#include "tabulate.h"

namespace {

constexpr int kNg = 12, kLdg = 16, kN1 = 40, kN2 = 8;
constexpr double kLower = -0.5, kUpper = 1.5, kH1 = 0.05, kH2 = 0.5, kExt = kUpper + kN2 * kH2;

struct Tables {
  int K, nnets;
  std::vector<double> coef, info;
  Tables(int K_, int nnets_, kt::Rng& rng) : K(K_), nnets(nnets_) {
    coef.assign(size_t(nnets) * (kN1 + kN2) * K * kLdg, 0.0);
    for (size_t q = 0; q < coef.size(); ++q)
      if (int(q % kLdg) < kNg) coef[q] = 0.3 * rng.normal();  // the padding columns stay zero
    for (int n = 0; n < nnets; ++n)
      info.insert(info.end(), {kLower, kUpper, kExt, kH1, kH2, double(kN1), double(kN2), 0.0});
  }
  std::vector<dpp::TableView> views(const std::vector<int>& nets) const {
    std::vector<dpp::TableView> v;
    for (int n : nets) v.emplace_back(coef.data() + size_t(n) * (kN1 + kN2) * K * kLdg, info.data() + 8 * n);
    return v;
  }
  // G and dG/ds of net n at s, straight from the definition (clamped outside the table)
  void eval(int n, double s, double* g, double* dg, bool* out) const {
    int k;
    double t, live = 1.0;
    *out = false;
    if (s >= kLower && s < kUpper) {
      k = std::min(int((s - kLower) / kH1), kN1 - 1);
      t = s - (kLower + k * kH1);
    } else if (s >= kUpper && s < kExt) {
      const int k2 = std::min(int((s - kUpper) / kH2), kN2 - 1);
      k = kN1 + k2;
      t = s - (kUpper + k2 * kH2);
    } else {
      *out = true;
      live = 0.0;
      k = s < kLower ? 0 : kN1 + kN2 - 1;
      t = s < kLower ? 0.0 : kH2;
    }
    const double* c = coef.data() + (size_t(n) * (kN1 + kN2) + k) * K * kLdg;
    for (int q = 0; q < kNg; ++q) {
      g[q] = dg[q] = 0;
      for (int p = 0; p < K; ++p) {
        g[q] += c[p * kLdg + q] * std::pow(t, p);
        if (p > 0) dg[q] += live * p * c[p * kLdg + q] * std::pow(t, p - 1);
      }
    }
  }
};

// Env rows: s spread over the table and beyond it, the last rows of each type block equal (padding).
std::vector<double> make_env(int nat, const std::vector<int>& sel, kt::Rng& rng) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  std::vector<double> e(size_t(nat) * nnei * 4);
  for (int i = 0; i < nat; ++i) {
    int off = 0;
    for (int n : sel) {
      const int pad = rng.integer(0, n - 1);
      for (int j = 0; j < n; ++j) {
        double* r = &e[(size_t(i) * nnei + off + j) * 4];
        if (j >= n - pad) {
          r[0] = -0.23, r[1] = 0.1, r[2] = -0.3, r[3] = 0.05;  // inside an interval
          continue;
        }
        r[0] = rng.uniform(-0.8, kExt + 0.6);
        for (int c = 1; c < 4; ++c) r[c] = rng.normal();
      }
      off += n;
    }
  }
  return e;
}

}  // namespace

KT_GROUP(tabulate) {
  kt::Rng rng(51);
  const std::vector<int> sel = {5, 8};
  const int nat = 9, nnei = 13;
  for (int K : {6, 4}) {
    const Tables tb(K, 4, rng);  // two-side: net ti + t * ntypes
    const int ti = 1;
    const std::vector<int> nets = {ti + 0 * 2, ti + 1 * 2};
    const auto views = tb.views(nets);
    const std::vector<double> env = make_env(nat, sel, rng);
    std::vector<double> out(nat * kNg * 4);
    const int64_t nout = K == 6 ? dpp::tabulate_forward<6>(env.data(), nat, sel, views, kNg, kLdg, out.data())
                                : dpp::tabulate_forward<4>(env.data(), nat, sel, views, kNg, kLdg, out.data());
    // direct evaluation
    std::vector<double> want(out.size(), 0.0), gT = rng.normals<double>(out.size()), genv_want(env.size(), 0.0);
    int64_t nout_want = 0;
    for (int i = 0; i < nat; ++i)
      for (int j = 0; j < nnei; ++j) {
        const double* r = &env[(i * nnei + j) * 4];
        double g[kNg], dg[kNg];
        bool is_out;
        tb.eval(nets[j < sel[0] ? 0 : 1], r[0], g, dg, &is_out);
        nout_want += is_out;
        double* ge = &genv_want[(i * nnei + j) * 4];
        for (int q = 0; q < kNg; ++q)
          for (int c = 0; c < 4; ++c) {
            const double gt = gT[(i * kNg + q) * 4 + c];
            want[(i * kNg + q) * 4 + c] += g[q] * r[c] / nnei;
            ge[c] += g[q] * gt / nnei;
            ge[0] += dg[q] * gt * r[c] / nnei;
          }
      }
    const std::string tag = "K=" + std::to_string(K);
    KT_ALL_CLOSE(out, want, 1e-12, 1e-12, tag + ": T = direct polynomial evaluation");
    KT_CHECK(nout == nout_want && nout > 0, tag + ": inputs outside the table counted");
    std::vector<double> genv(env.size());
    if (K == 6) dpp::tabulate_backward<6>(env.data(), gT.data(), nat, sel, views, kNg, kLdg, genv.data());
    else dpp::tabulate_backward<4>(env.data(), gT.data(), nat, sel, views, kNg, kLdg, genv.data());
    KT_ALL_CLOSE(genv, genv_want, 1e-12, 1e-12, tag + ": backward = direct derivative");
    // and against a finite difference of the forward (s moved inside its interval)
    const std::vector<double> v = rng.normals<double>(env.size());
    const double h = 1e-7;
    std::vector<double> ep = env, em = env, op(out.size()), om(out.size());
    for (size_t k = 0; k < v.size(); ++k) ep[k] += h * v[k], em[k] -= h * v[k];
    if (K == 6) {
      dpp::tabulate_forward<6>(ep.data(), nat, sel, views, kNg, kLdg, op.data());
      dpp::tabulate_forward<6>(em.data(), nat, sel, views, kNg, kLdg, om.data());
    } else {
      dpp::tabulate_forward<4>(ep.data(), nat, sel, views, kNg, kLdg, op.data());
      dpp::tabulate_forward<4>(em.data(), nat, sel, views, kNg, kLdg, om.data());
    }
    KT_CLOSE(kt::dot(genv, v), (kt::dot(gT, op) - kt::dot(gT, om)) / (2 * h), 1e-6, 1e-6, tag + ": backward = FD");
    // double backward: the adjoint of the (linear in gT) backward
    const std::vector<double> A = rng.normals<double>(env.size());
    std::vector<double> ggT(out.size());
    if (K == 6) dpp::tabulate_double_backward<6>(env.data(), A.data(), nat, sel, views, kNg, kLdg, ggT.data());
    else dpp::tabulate_double_backward<4>(env.data(), A.data(), nat, sel, views, kNg, kLdg, ggT.data());
    KT_CLOSE(kt::dot(ggT, gT), kt::dot(genv, A), 1e-12, 1e-12, tag + ": <ggT(A), gT> = <backward(gT), A>");
  }
}

KT_GROUP(descriptor) {
  kt::Rng rng(61);
  const int nat = 6, ng = 12, na = 5;
  const std::vector<double> T = rng.normals<double>(nat * ng * 4), gD = rng.normals<double>(nat * ng * na);
  std::vector<double> D(nat * ng * na), want(D.size(), 0.0);
  dpp::descriptor_forward(T.data(), nat, ng, na, D.data());
  for (int i = 0; i < nat; ++i)
    for (int g = 0; g < ng; ++g)
      for (int a = 0; a < na; ++a)
        for (int c = 0; c < 4; ++c) want[(i * ng + g) * na + a] += T[(i * ng + g) * 4 + c] * T[(i * ng + a) * 4 + c];
  KT_ALL_CLOSE(D, want, 1e-14, 1e-14, "D = T T<^T");
  // backward against finite differences of <gD, D(T)> (quadratic: central differences are exact)
  std::vector<double> gT(T.size());
  dpp::descriptor_backward(T.data(), gD.data(), nat, ng, na, gT.data());
  auto loss = [&](const std::vector<double>& t, const std::vector<double>& w) {
    std::vector<double> d(D.size());
    dpp::descriptor_forward(t.data(), nat, ng, na, d.data());
    return kt::dot(w, d);
  };
  const std::vector<double> v = rng.normals<double>(T.size());
  const double h = 1e-3;
  std::vector<double> tp = T, tm = T;
  for (size_t k = 0; k < v.size(); ++k) tp[k] += h * v[k], tm[k] -= h * v[k];
  KT_CLOSE(kt::dot(gT, v), (loss(tp, gD) - loss(tm, gD)) / (2 * h), 1e-10, 1e-10, "descriptor backward = FD");
  // double backward along a cotangent A of gT: ggD (the adjoint in gD) and the derivative in T
  const std::vector<double> A = rng.normals<double>(T.size());
  std::vector<double> ggD(D.size()), gT2(T.size());
  dpp::descriptor_double_backward(T.data(), A.data(), nat, ng, na, ggD.data());
  KT_CLOSE(kt::dot(ggD, gD), kt::dot(gT, A), 1e-12, 1e-12, "<ggD, gD> = <backward(gD), A>");
  dpp::descriptor_backward(A.data(), gD.data(), nat, ng, na, gT2.data());
  std::vector<double> bp(T.size()), bm(T.size());
  dpp::descriptor_backward(tp.data(), gD.data(), nat, ng, na, bp.data());
  dpp::descriptor_backward(tm.data(), gD.data(), nat, ng, na, bm.data());
  KT_CLOSE(kt::dot(gT2, v), (kt::dot(bp, A) - kt::dot(bm, A)) / (2 * h), 1e-10, 1e-10, "d<backward, A>/dT = FD");
}
