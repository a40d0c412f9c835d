// The environment matrix (env_mat.h) against its formula and finite differences; r_ij
// (build_rij.h) and the force product (prod_force.h) against naive loops.
#include <cmath>
#include <vector>

#include "build_rij.h"
#include "check.h"
#include "env_mat.h"
#include "prod_force.h"

namespace {

constexpr double kRcut = 3.0, kRmin = 0.5;

// R~ of one slot from the formula in env_mat.h.
void env_formula(const double* r, bool used, const double* avg, const double* sd, double* out) {
  double R[4] = {0, 0, 0, 0};
  if (used) {
    const double d = std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
    const double u = std::min(std::max((d - kRmin) / (kRcut - kRmin), 0.0), 1.0);
    const double w = u * u * u * (-6 * u * u + 15 * u - 10) + 1;
    R[0] = w / d;
    for (int c = 0; c < 3; ++c) R[c + 1] = w * r[c] / (d * d);
  }
  for (int c = 0; c < 4; ++c) out[c] = (R[c] - avg[c]) / sd[c];
}

struct EnvCase {
  int natoms = 7, nnei = 9, ntypes = 2;
  std::vector<double> rij, davg, dstd;
  std::vector<int32_t> nlist, atype;
  explicit EnvCase(uint64_t seed) {
    kt::Rng rng(seed);
    rij.resize(natoms * nnei * 3);
    nlist.resize(natoms * nnei);
    atype.resize(natoms);
    for (int i = 0; i < natoms; ++i) atype[i] = rng.integer(0, ntypes - 1);
    for (int s = 0; s < natoms * nnei; ++s) {
      nlist[s] = s % nnei < 7 ? rng.integer(0, 20) : -1;  // the last two slots padded
      // distances across the switch (0.5..3) and beyond rcut
      const double d = rng.uniform(0.3, 3.4), th = rng.uniform(0, M_PI), ph = rng.uniform(0, 2 * M_PI);
      const double dir[3] = {std::sin(th) * std::cos(ph), std::sin(th) * std::sin(ph), std::cos(th)};
      for (int c = 0; c < 3; ++c) rij[3 * s + c] = d * dir[c];
    }
    davg = rng.normals<double>(ntypes * nnei * 4, 0.1);
    dstd.resize(ntypes * nnei * 4);
    for (auto& v : dstd) v = rng.uniform(0.3, 1.2);
  }
  std::vector<double> forward(const std::vector<double>& r) const {
    std::vector<double> env(natoms * nnei * 4);
    dpp::env_mat_forward<double>(r.data(), nlist.data(), atype.data(), davg.data(), dstd.data(), natoms, nnei,
                                 ntypes, kRcut, kRmin, env.data());
    return env;
  }
  std::vector<double> backward(const std::vector<double>& r, const std::vector<double>& g_env) const {
    std::vector<double> g(natoms * nnei * 3);
    dpp::env_mat_backward<double>(r.data(), nlist.data(), atype.data(), dstd.data(), g_env.data(), natoms, nnei,
                                  ntypes, kRcut, kRmin, g.data());
    return g;
  }
};

}  // namespace

KT_GROUP(env_mat) {
  const EnvCase e(11);
  kt::Rng rng(12);
  const std::vector<double> env = e.forward(e.rij);
  for (int i = 0; i < e.natoms; ++i)
    for (int j = 0; j < e.nnei; ++j) {
      const int s = i * e.nnei + j, o = (e.atype[i] * e.nnei + j) * 4;
      double want[4];
      env_formula(&e.rij[3 * s], e.nlist[s] >= 0, &e.davg[o], &e.dstd[o], want);
      for (int c = 0; c < 4; ++c) KT_CLOSE(env[4 * s + c], want[c], 1e-13, 1e-13, "env = formula");
    }
  // float32 follows the same formula
  std::vector<float> rf(e.rij.begin(), e.rij.end()), af(e.davg.begin(), e.davg.end()), sf(e.dstd.begin(), e.dstd.end());
  std::vector<float> envf(env.size());
  dpp::env_mat_forward<float>(rf.data(), e.nlist.data(), e.atype.data(), af.data(), sf.data(), e.natoms, e.nnei,
                              e.ntypes, kRcut, kRmin, envf.data());
  KT_ALL_CLOSE(envf, env, 1e-5, 1e-5, "float32 env");

  // gradient: <g_env, d env> along a direction v = <backward(g_env), v>, by central differences
  const std::vector<double> g_env = rng.normals<double>(env.size());
  const std::vector<double> g = e.backward(e.rij, g_env);
  const double h = 1e-6;
  for (int trial = 0; trial < 3; ++trial) {
    const std::vector<double> v = rng.normals<double>(e.rij.size());
    std::vector<double> rp = e.rij, rm = e.rij;
    for (size_t k = 0; k < v.size(); ++k) {
      rp[k] += h * v[k];
      rm[k] -= h * v[k];
    }
    const double fd = (kt::dot(g_env, e.forward(rp)) - kt::dot(g_env, e.forward(rm))) / (2 * h);
    KT_CLOSE(kt::dot(g, v), fd, 1e-6, 1e-6, "env gradient = finite difference");
    // double backward: gg_env = J v (the JVP), g_rij = the Hessian term, against differences of backward
    std::vector<double> gg_env(env.size()), g2(e.rij.size());
    dpp::env_mat_double_backward<double>(e.rij.data(), e.nlist.data(), e.atype.data(), e.dstd.data(), g_env.data(),
                                         v.data(), e.natoms, e.nnei, e.ntypes, kRcut, kRmin, gg_env.data(), g2.data());
    const std::vector<double> ep = e.forward(rp), em = e.forward(rm);
    std::vector<double> jvp(env.size());
    for (size_t k = 0; k < jvp.size(); ++k) jvp[k] = (ep[k] - em[k]) / (2 * h);
    KT_ALL_CLOSE(gg_env, jvp, 1e-6, 1e-6, "double backward: gg_env = J v");
    const std::vector<double> gp = e.backward(rp, g_env), gm = e.backward(rm, g_env);
    std::vector<double> hv(g.size());
    for (size_t k = 0; k < hv.size(); ++k) hv[k] = (gp[k] - gm[k]) / (2 * h);
    KT_ALL_CLOSE(g2, hv, 1e-6, 1e-6, "double backward: g_rij = H v");
  }
  // padded slots: zero R before normalisation, zero gradient
  for (int i = 0; i < e.natoms; ++i)
    for (int j = 7; j < e.nnei; ++j)
      for (int c = 0; c < 3; ++c) KT_CHECK(g[3 * (i * e.nnei + j) + c] == 0.0, "padded slot: no gradient");
}

KT_GROUP(env_mat_mask) {
  // excluded type pairs: rows with mask 0 are zero in all three kernels, the others unchanged
  const EnvCase e(13);
  kt::Rng rng(14);
  std::vector<double> mask(e.ntypes * e.nnei, 1.0);
  for (int j = 0; j < e.nnei; j += 2) mask[1 * e.nnei + j] = 0.0;  // centre type 1: every other slot
  const std::vector<double> env = e.forward(e.rij), g_env = rng.normals<double>(env.size());
  const std::vector<double> v = rng.normals<double>(e.rij.size()), g = e.backward(e.rij, g_env);
  std::vector<double> menv(env.size()), mg(g.size()), gg(env.size()), g2(g.size()), mgg(env.size()), mg2(g.size());
  dpp::env_mat_forward<double>(e.rij.data(), e.nlist.data(), e.atype.data(), e.davg.data(), e.dstd.data(), e.natoms,
                               e.nnei, e.ntypes, kRcut, kRmin, menv.data(), mask.data());
  dpp::env_mat_backward<double>(e.rij.data(), e.nlist.data(), e.atype.data(), e.dstd.data(), g_env.data(), e.natoms,
                                e.nnei, e.ntypes, kRcut, kRmin, mg.data(), mask.data());
  dpp::env_mat_double_backward<double>(e.rij.data(), e.nlist.data(), e.atype.data(), e.dstd.data(), g_env.data(),
                                       v.data(), e.natoms, e.nnei, e.ntypes, kRcut, kRmin, gg.data(), g2.data());
  dpp::env_mat_double_backward<double>(e.rij.data(), e.nlist.data(), e.atype.data(), e.dstd.data(), g_env.data(),
                                       v.data(), e.natoms, e.nnei, e.ntypes, kRcut, kRmin, mgg.data(), mg2.data(),
                                       mask.data());
  int zeroed = 0;
  for (int i = 0; i < e.natoms; ++i)
    for (int j = 0; j < e.nnei; ++j) {
      const int s = i * e.nnei + j;
      const bool off = mask[e.atype[i] * e.nnei + j] == 0.0;
      zeroed += off;
      for (int c = 0; c < 4; ++c) {
        KT_CHECK(menv[4 * s + c] == (off ? 0.0 : env[4 * s + c]), "masked env");
        KT_CHECK(mgg[4 * s + c] == (off ? 0.0 : gg[4 * s + c]), "masked gg_env");
      }
      for (int c = 0; c < 3; ++c) {
        KT_CHECK(mg[3 * s + c] == (off ? 0.0 : g[3 * s + c]), "masked gradient");
        KT_CHECK(mg2[3 * s + c] == (off ? 0.0 : g2[3 * s + c]), "masked double gradient");
      }
    }
  KT_CHECK(zeroed > 0, "the case has excluded slots");
}

KT_GROUP(build_rij) {
  kt::Rng rng(21);
  const int nf = 2, nall = 11, nc = 4, nnei = 5;
  const std::vector<double> x = rng.normals<double>(nf * nall * 3), sh = rng.normals<double>(nf * nc * nnei * 3);
  const std::vector<int64_t> centre = {3, 0, 10, 7};
  std::vector<int32_t> nl(nf * nc * nnei);
  for (auto& j : nl) j = rng.integer(-1, nall - 1);
  std::vector<double> rij(nf * nc * nnei * 3);
  dpp::build_rij<double>(x.data(), nl.data(), sh.data(), centre.data(), rij.data(), nf, nall, nc, nnei);
  std::vector<double> want(rij.size()), gx_want(nf * nall * 3, 0.0);
  const std::vector<double> gr = rng.normals<double>(rij.size());
  for (int f = 0; f < nf; ++f)
    for (int c = 0; c < nc; ++c)
      for (int k = 0; k < nnei; ++k) {
        const int s = (f * nc + c) * nnei + k, j = std::max(nl[s], 0);
        for (int d = 0; d < 3; ++d) {
          want[3 * s + d] = x[(f * nall + j) * 3 + d] + sh[3 * s + d] - x[(f * nall + centre[c]) * 3 + d];
          gx_want[(f * nall + j) * 3 + d] += gr[3 * s + d];
          gx_want[(f * nall + centre[c]) * 3 + d] -= gr[3 * s + d];
        }
      }
  KT_ALL_CLOSE(rij, want, 0.0, 0.0, "rij = x_j + shift - x_i");
  std::vector<double> gx(nf * nall * 3, 42.0);
  dpp::build_rij_backward<double>(nl.data(), centre.data(), gr.data(), gx.data(), nf, nall, nc, nnei);
  KT_ALL_CLOSE(gx, gx_want, 1e-14, 1e-14, "build_rij_backward = the scatter");
}

KT_GROUP(prod_force) {
  kt::Rng rng(31);
  const int nf = 2, nall = 9, nc = 5, nnei = 6;
  const std::vector<double> g = rng.normals<double>(nf * nc * nnei * 3), r = rng.normals<double>(g.size());
  const std::vector<int64_t> centre = {8, 2, 0, 5, 4};
  std::vector<int32_t> nl(nf * nc * nnei);
  for (auto& j : nl) j = rng.integer(-1, nall - 1);
  std::vector<double> force(nf * nall * 3, 7.0), virial(nf * 9, 7.0), av(nf * nall * 9, 7.0);
  dpp::prod_force_virial<double>(g.data(), r.data(), nl.data(), centre.data(), nf, nc, nnei, nall, force.data(),
                                 virial.data(), av.data());
  std::vector<double> f_want(force.size(), 0.0), v_want(virial.size(), 0.0), av_want(av.size(), 0.0);
  for (int f = 0; f < nf; ++f)
    for (int i = 0; i < nc; ++i)
      for (int k = 0; k < nnei; ++k) {
        const int s = (f * nc + i) * nnei + k, j = nl[s];
        if (j < 0) continue;
        for (int a = 0; a < 3; ++a) {
          f_want[(f * nall + centre[i]) * 3 + a] += g[3 * s + a];
          f_want[(f * nall + j) * 3 + a] -= g[3 * s + a];
          for (int b = 0; b < 3; ++b) {
            v_want[f * 9 + 3 * a + b] -= g[3 * s + a] * r[3 * s + b];
            av_want[(f * nall + j) * 9 + 3 * a + b] -= g[3 * s + a] * r[3 * s + b];
          }
        }
      }
  KT_ALL_CLOSE(force, f_want, 1e-13, 1e-13, "force = naive sum");
  KT_ALL_CLOSE(virial, v_want, 1e-13, 1e-13, "virial = naive sum");
  KT_ALL_CLOSE(av, av_want, 1e-13, 1e-13, "atom virial = naive sum");
  // the atom virials sum to the virial
  for (int f = 0; f < nf; ++f)
    for (int q = 0; q < 9; ++q) {
      double s = 0;
      for (int j = 0; j < nall; ++j) s += av[(f * nall + j) * 9 + q];
      KT_CLOSE(s, virial[f * 9 + q], 1e-13, 1e-13, "sum of atom virials");
    }
}
