// The fused embedding kernels (embedding.h, embedding_train.h) against a naive MLP loop and
// finite differences, in float64 and float32.
#include <cmath>
#include <vector>

#include "check.h"
#include "embedding.h"
#include "embedding_train.h"

namespace {

// Nets 1 -> 5 -> 10 -> 10 (no skip, [x, x] skip, x skip), ng = 10 (not a multiple of the lanes),
// one per neighbour type; parameters flat, per net per layer W (n_in x n_out), b, idt if any.
struct Nets {
  std::vector<int> widths = {1, 5, 10, 10};
  bool timestep;
  int ntypes = 2;
  std::vector<double> theta;
  explicit Nets(bool ts, kt::Rng& rng) : timestep(ts) {
    for (int t = 0; t < ntypes; ++t)
      for (size_t l = 0; l + 1 < widths.size(); ++l) {
        const int ni = widths[l], no = widths[l + 1];
        for (int k = 0; k < ni * no; ++k) theta.push_back(0.8 * rng.normal() / std::sqrt(ni));
        for (int k = 0; k < no; ++k) theta.push_back(0.3 * rng.normal());
        if (has_idt(ni, no))
          for (int k = 0; k < no; ++k) theta.push_back(0.1 + 0.05 * rng.normal());
      }
  }
  bool has_idt(int ni, int no) const { return timestep && (no == ni || no == 2 * ni); }
  int ng() const { return widths.back(); }
  template <typename T>
  std::vector<dpp::EmbedNet<T>> views(const std::vector<T>& th) const {
    std::vector<dpp::EmbedNet<T>> nets(ntypes);
    size_t off = 0;
    for (int t = 0; t < ntypes; ++t)
      for (size_t l = 0; l + 1 < widths.size(); ++l) {
        dpp::EmbedLayer<T> L;
        L.n_in = widths[l], L.n_out = widths[l + 1];
        L.w = th.data() + off;
        off += L.n_in * L.n_out;
        L.b = th.data() + off;
        off += L.n_out;
        L.idt = has_idt(L.n_in, L.n_out) ? th.data() + off : nullptr;
        if (L.idt) off += L.n_out;
        nets[t].push_back(L);
      }
    return nets;
  }
  // G(s) of net t: the plain loop over layers
  std::vector<double> naive(int t, double s) const {
    size_t off = 0;
    for (int u = 0; u < t; ++u)
      for (size_t l = 0; l + 1 < widths.size(); ++l)
        off += widths[l] * widths[l + 1] + widths[l + 1] * (has_idt(widths[l], widths[l + 1]) ? 2 : 1);
    std::vector<double> x = {s};
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      const int ni = widths[l], no = widths[l + 1];
      const double* W = &theta[off];
      const double* b = W + ni * no;
      const double* idt = has_idt(ni, no) ? b + no : nullptr;
      off += ni * no + no * (idt ? 2 : 1);
      std::vector<double> y(no);
      for (int c = 0; c < no; ++c) {
        double z = b[c];
        for (int k = 0; k < ni; ++k) z += x[k] * W[k * no + c];
        y[c] = std::tanh(z) * (idt ? idt[c] : 1.0);
        if (no == ni) y[c] += x[c];
        if (no == 2 * ni) y[c] += x[c % ni];
      }
      x = y;
    }
    return x;
  }
};

const std::vector<int> kSel = {4, 7};
constexpr int kNnei = 11, kNat = 6, kWidth = 10;

std::vector<double> make_env(kt::Rng& rng) {
  std::vector<double> e = rng.normals<double>(kNat * kNnei * 4, 0.7);
  for (int i = 0; i < kNat; ++i)  // padding: the last 2 slots of type 0, the last 3 of type 1
    for (int j : {2, 3, 8, 9, 10})
      for (int c = 0; c < 4; ++c) e[(i * kNnei + j) * 4 + c] = c == 0 ? -0.25 : 0.1 * c;
  return e;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
std::vector<T> forward(const Nets& n, const std::vector<T>& env, const std::vector<T>& th) {
  std::vector<T> out(kNat * n.ng() * 4);
  dpp::se_a_embed_forward<T>(env.data(), kNat, kSel, n.views(th), n.ng(), kWidth, out.data());
  return out;
}

template <typename T>
std::vector<T> backward(const Nets& n, const std::vector<T>& env, const std::vector<T>& th, const std::vector<T>& gT) {
  std::vector<T> genv(env.size());
  dpp::se_a_embed_backward<T>(env.data(), gT.data(), kNat, kSel, n.views(th), n.ng(), kWidth, genv.data());
  return genv;
}

std::vector<double> moved(const std::vector<double>& x, const std::vector<double>& v, double h) {
  std::vector<double> y = x;
  for (size_t k = 0; k < y.size(); ++k) y[k] += h * v[k];
  return y;
}

template <typename T>
void check_forward(const Nets& n, const std::vector<double>& env, const std::string& tag) {
  const std::vector<T> out = forward<T>(n, cast<T>(env), cast<T>(n.theta));
  std::vector<double> want(out.size(), 0.0);
  for (int i = 0; i < kNat; ++i)
    for (int j = 0; j < kNnei; ++j) {
      const double* r = &env[(i * kNnei + j) * 4];
      const std::vector<double> g = n.naive(j < kSel[0] ? 0 : 1, r[0]);
      for (int q = 0; q < n.ng(); ++q)
        for (int c = 0; c < 4; ++c) want[(i * n.ng() + q) * 4 + c] += g[q] * r[c] / kNnei;
    }
  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-13;
  KT_ALL_CLOSE(out, want, tol, tol, tag + ": T = naive MLP loop");
}

}  // namespace

KT_GROUP(embedding) {
  kt::Rng rng(71);
  for (bool ts : {false, true}) {
    const Nets n(ts, rng);
    const std::string tag = ts ? "timestep" : "plain";
    const std::vector<double> env = make_env(rng);
    check_forward<double>(n, env, tag);
    check_forward<float>(n, env, tag + " float32");
    // backward: directional derivative in Env by central differences
    const std::vector<double> gT = rng.normals<double>(kNat * n.ng() * 4), v = rng.normals<double>(env.size());
    const std::vector<double> genv = backward<double>(n, env, n.theta, gT);
    const double h = 1e-6;
    const double fd = (kt::dot(gT, forward<double>(n, moved(env, v, h), n.theta)) -
                       kt::dot(gT, forward<double>(n, moved(env, v, -h), n.theta))) / (2 * h);
    KT_CLOSE(kt::dot(genv, v), fd, 1e-7, 1e-7, tag + ": dL/dEnv = FD");
    // the cache of G, G' from the forward gives the same gradient
    const int ldc = 16;
    std::vector<double> out(kNat * n.ng() * 4), cache(kNat * kNnei * 2 * ldc), genv_c(env.size());
    dpp::se_a_embed_forward<double>(env.data(), kNat, kSel, n.views(n.theta), n.ng(), kWidth, out.data(),
                                    cache.data(), ldc);
    dpp::se_a_embed_backward<double>(env.data(), gT.data(), kNat, kSel, n.views(n.theta), n.ng(), kWidth,
                                     genv_c.data(), cache.data(), ldc);
    KT_ALL_CLOSE(genv_c, genv, 1e-15, 1e-15, tag + ": backward from the cache");
    const std::vector<float> gf = backward<float>(n, cast<float>(env), cast<float>(n.theta), cast<float>(gT));
    KT_ALL_CLOSE(gf, genv, 1e-4, 1e-4, tag + ": float32 backward");

    // weight gradients of L1 = <tbar, T(theta)> and L2 = <a, dL/dEnv(gT, theta)>, by differences in theta
    const std::vector<double> tbar = rng.normals<double>(gT.size()), a = rng.normals<double>(env.size());
    const std::vector<double> w = rng.normals<double>(n.theta.size());
    auto pgrad = [&](const double* tb, const double* g, const double* aa, double* genv_out, double* ggT_out) {
      std::vector<double> p(n.theta.size(), 0.0);
      dpp::se_a_embed_param_grad<double>(env.data(), tb, g, aa, kNat, kSel, n.views(n.theta), n.ng(), genv_out,
                                         ggT_out, p.data());
      return p;
    };
    std::vector<double> genv0(env.size()), ggT(gT.size());
    const std::vector<double> p1 = pgrad(tbar.data(), nullptr, nullptr, genv0.data(), nullptr);
    const std::vector<double> p2 = pgrad(nullptr, gT.data(), a.data(), nullptr, ggT.data());
    const std::vector<double> p12 = pgrad(tbar.data(), gT.data(), a.data(), nullptr, nullptr);
    const std::vector<double> tp = moved(n.theta, w, h), tm = moved(n.theta, w, -h);
    const double fd1 = (kt::dot(tbar, forward<double>(n, env, tp)) - kt::dot(tbar, forward<double>(n, env, tm))) / (2 * h);
    const double fd2 = (kt::dot(a, backward<double>(n, env, tp, gT)) - kt::dot(a, backward<double>(n, env, tm, gT))) / (2 * h);
    KT_CLOSE(kt::dot(p1, w), fd1, 1e-7, 1e-7, tag + ": dL1/dtheta = FD");
    KT_CLOSE(kt::dot(p2, w), fd2, 1e-7, 1e-7, tag + ": dL2/dtheta = FD");
    std::vector<double> sum(p1.size());
    for (size_t k = 0; k < sum.size(); ++k) sum[k] = p1[k] + p2[k];
    KT_ALL_CLOSE(p12, sum, 1e-12, 1e-12, tag + ": both cotangents at once");
    KT_ALL_CLOSE(genv0, backward<double>(n, env, n.theta, tbar), 1e-13, 1e-13, tag + ": genv_out = backward");
    // ggT = dL2/dgT: the adjoint of the backward (linear in gT), also without weight gradients
    const std::vector<double> u = rng.normals<double>(gT.size());
    KT_CLOSE(kt::dot(ggT, u), kt::dot(a, backward<double>(n, env, n.theta, u)), 1e-12, 1e-12, tag + ": ggT adjoint");
    std::vector<double> ggT2(gT.size()), ggT3(gT.size());
    dpp::se_a_embed_ggt<double>(env.data(), a.data(), kNat, kSel, n.views(n.theta), n.ng(), kWidth, ggT2.data());
    dpp::se_a_embed_ggt<double>(env.data(), a.data(), kNat, kSel, n.views(n.theta), n.ng(), kWidth, ggT3.data(),
                                cache.data(), ldc);
    KT_ALL_CLOSE(ggT2, ggT, 1e-13, 1e-13, tag + ": se_a_embed_ggt");
    KT_ALL_CLOSE(ggT3, ggT, 1e-13, 1e-13, tag + ": se_a_embed_ggt from the cache");
    // the autograd operator's two sweeps are these same calls
    std::vector<double> s0(n.theta.size(), 0.0), s1(n.theta.size(), 0.0), first(env.size()), second(gT.size());
    dpp::se_a_embed_train_sweep<double>(0, env.data(), tbar.data(), nullptr, kNat, kSel, n.views(n.theta), n.ng(),
                                        first.data(), nullptr, s0.data());
    dpp::se_a_embed_train_sweep<double>(1, env.data(), gT.data(), a.data(), kNat, kSel, n.views(n.theta), n.ng(),
                                        nullptr, second.data(), s1.data());
    KT_ALL_CLOSE(s0, p1, 0.0, 0.0, tag + ": sweep mode 0");
    KT_ALL_CLOSE(s1, p2, 0.0, 0.0, tag + ": sweep mode 1");
    KT_ALL_CLOSE(first, genv0, 0.0, 0.0, tag + ": sweep mode 0 genv");
    KT_ALL_CLOSE(second, ggT, 0.0, 0.0, tag + ": sweep mode 1 ggT");
  }
}
