// Training kernels of the fused se_e2_a embedding (plain C++, no Paddle types).
//
// With T_i = (1/nnei) sum_j w_j G(s_j)^T R~_j (w_j: how many equal padded slots row j stands
// for, see tail_start) a training step needs, per centre atom:
//   mode 0 (gradient, cotangent gT on T):
//       dL/dR~_j = (1/nnei) [G_j gT + e_0 G'_j . (gT R~_j)],   dL/dtheta from  Gbar_j = w_j u_j / nnei
//       with u_j = gT R~_j (ng values) and G' = dG/ds;
//   mode 1 (double gradient, cotangent a_j on dL/dR~_j, from a loss on forces):
//       d/dgT = (1/nnei) sum_j [G_j a_j^T + a_j0 G'_j R~_j^T],
//       dL/dtheta from Gbar_j = (gT a_j) / nnei and G'bar_j = a_j0 u_j / nnei.
// The weight gradients come from the reverse sweep of embed_train_net.h.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "embed_train_net.h"
#include "embedding.h"

namespace dpp {

// The cotangent a of slots first..last-1 (a tail row stands for several equal slots), times scale.
template <typename T>
inline void row_cotangent(const T* a, int64_t first, int64_t last, T scale, T s[4]) {
  s[0] = s[1] = s[2] = s[3] = T(0);
  for (int64_t jj = first; jj < last; ++jj)
    for (int c = 0; c < 4; ++c) s[c] += a[jj * 4 + c];
  for (int c = 0; c < 4; ++c) s[c] *= scale;
}

// ggT (in the [4][ld] layout q) += G_j s^T + s_0 G'_j R~_j^T for one row.
template <typename T>
inline void add_ggt_row(T* q, int ld, const T* gj, const T* gpj, const T s[4], const T* ej) {
  T* q0 = q;
  T* q1 = q + ld;
  T* q2 = q + 2 * ld;
  T* q3 = q + 3 * ld;
  const T s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3], e0 = ej[0], e1 = ej[1], e2 = ej[2], e3 = ej[3];
#pragma omp simd
  for (int k = 0; k < ld; ++k) {
    const T gk = gj[k], pk = s0 * gpj[k];
    q0[k] += gk * s0 + pk * e0;
    q1[k] += gk * s1 + pk * e1;
    q2[k] += gk * s2 + pk * e2;
    q3[k] += gk * s3 + pk * e3;
  }
}

// The weight gradients of a loss that reaches T through two cotangents (either may be null):
//   tbar  (nat x ng x 4): dL/dT directly (an energy loss; the first backward), and
//   a     (nat x nnei x 4): dL/d(dE/dR~), with gT = dE/dT (a loss on forces; the double backward).
// Per row: Gbar_j = (1/nnei) [w_j u(tbar)_j + gT a_j], G'bar_j = (1/nnei) a_j0 u(gT)_j, where
// u(x)_j = x R~_j and the tail row's a is the sum over the slots it stands for. Optionally also
//   genv_out = dL/dR~ for the cotangent tbar (needs G'), and
//   ggT_out  = dL/dgT = (1/nnei) sum_j [G_j a_j^T + a_j0 G'_j R~_j^T].
// pgrad: all nets' parameter gradients, flat in net order (W, b, idt per layer), zeroed by the caller.
// tape (optional): what se_a_embed_tape_forward stored (row stride tape_ld), read instead of the
// forward-mode pass.
template <typename T>
void se_a_embed_param_grad(const T* env, const T* tbar, const T* gT, const T* a, int64_t nat,
                           const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets, int ng,
                           T* genv_out, T* ggT_out, T* pgrad, const T* tape = nullptr, int tape_ld = 0) {
  int nnei = 0, maxsel = 1;
  for (int s : sel) { nnei += s; maxsel = std::max(maxsel, s); }
  const T scale = T(1) / T(nnei);
  const bool second = a != nullptr && gT != nullptr;
  std::vector<TrainNet<T>> tn;
  for (const auto& n : nets) tn.emplace_back(n);
  std::vector<int64_t> poff(nets.size() + 1, 0);
  for (size_t t = 0; t < nets.size(); ++t) {
    int64_t n = 0;
    for (const auto& P : tn[t].fwd) n += int64_t(P.n_in) * P.n_out + P.n_out + (P.has_idt ? P.n_out : 0);
    poff[t + 1] = poff[t] + n;
  }
  const int64_t nchunk = std::min<int64_t>(nat, 32);
  std::vector<std::vector<T>> partial(nchunk, std::vector<T>(poff.back(), T(0)));
#pragma omp parallel
  {
    std::vector<TrainTape<T>> tapes;
    std::vector<NetGrads<T>> acc;
    for (size_t t = 0; t < nets.size(); ++t) {
      tapes.emplace_back(tn[t], maxsel);
      acc.emplace_back(tn[t]);
    }
    const int ldg = tn.empty() ? 0 : tn[0].ldg;  // all nets end with ng outputs
    std::vector<T> u(ldg, T(0)), ub(ldg, T(0)), gt4(4 * ldg, T(0)), tb4(4 * ldg, T(0)), ggt4(4 * ldg, T(0));
    const T* g0 = gt4.data();
    const T* g1 = g0 + ldg;
    const T* g2 = g1 + ldg;
    const T* g3 = g2 + ldg;
    // Atoms go in a fixed number of chunks whose sums are added in order: the result does
    // not depend on the thread count or on which thread took which chunk (a restarted run
    // repeats the uninterrupted one bit for bit).
#pragma omp for schedule(dynamic, 1)
    for (int64_t chunk = 0; chunk < nchunk; ++chunk) {
      for (auto& g : acc) g.zero();
      for (int64_t i = chunk * nat / nchunk; i < (chunk + 1) * nat / nchunk; ++i) {
        if (tbar) load_transposed(tbar + i * ng * 4, ng, ldg, tb4.data());
        if (second) load_transposed(gT + i * ng * 4, ng, ldg, gt4.data());
        if (ggT_out) std::fill(ggt4.begin(), ggt4.end(), T(0));
        int off = 0;
        for (size_t t = 0; t < nets.size(); ++t) {
          const int rows = sel[t];
          const T* e = env + (i * nnei + off) * 4;
          const int slot0 = off;
          off += rows;
          if (rows == 0) continue;
          const int p = tail_start(e, rows), n = p + 1;
          auto& tp = tapes[t];
          if (tape) load_tape(tn[t], tp, n, e, tape + (i * nnei + slot0) * int64_t(tape_ld), tape_ld);
          else train_forward(tn[t], n, e, tp);
          const T* G = tp.a.back().data();
          const T* Gp = tp.da.back().data();
          for (int j = 0; j < n; ++j) {
            const T* ej = e + j * 4;
            const T* gj = G + int64_t(j) * ldg;
            const T* gpj = Gp + int64_t(j) * ldg;
            const T e0 = ej[0], e1 = ej[1], e2 = ej[2], e3 = ej[3];
            const int last = j == p ? rows : j + 1;  // the tail row stands for slots p..rows-1
            T* gb = tp.yb.data() + int64_t(j) * ldg;
            T* dgb = tp.dyb.data() + int64_t(j) * ldg;
            if (tbar) {
              T v[4];
              row_gradient(tb4.data(), ldg, gj, gpj, ej, scale, ub.data(), v);
              if (genv_out)
                for (int jj = j; jj < last; ++jj)
                  for (int c = 0; c < 4; ++c) genv_out[(i * nnei + slot0 + jj) * 4 + c] = v[c];
              const T w = scale * T(last - j);
#pragma omp simd
              for (int k = 0; k < ldg; ++k) gb[k] = ub[k] * w;
            } else {
              std::fill(gb, gb + ldg, T(0));
            }
            if (second) {
              T sa[4];  // every term is linear in a_j
              row_cotangent(a + (i * nnei + slot0) * 4, j, last, scale, sa);
              const T s0 = sa[0], s1 = sa[1], s2 = sa[2], s3 = sa[3];
#pragma omp simd
              for (int k = 0; k < ldg; ++k) {
                gb[k] += g0[k] * s0 + g1[k] * s1 + g2[k] * s2 + g3[k] * s3;
                dgb[k] = s0 * (g0[k] * e0 + g1[k] * e1 + g2[k] * e2 + g3[k] * e3);
              }
              if (ggT_out) add_ggt_row(ggt4.data(), ldg, gj, gpj, sa, ej);
            }
          }
          if (second) train_reverse<T, true>(tn[t], n, tp, acc[t]);
          else train_reverse<T, false>(tn[t], n, tp, acc[t]);
        }
        if (ggT_out) store_transposed(ggt4.data(), ldg, ng, ggT_out + i * ng * 4);
      }
      for (size_t t = 0; t < nets.size(); ++t) acc[t].add_to(tn[t], partial[chunk].data() + poff[t]);
    }
  }
  for (const auto& part : partial)
    for (int64_t k = 0; k < poff.back(); ++k) pgrad[k] += part[k];
}

// se_a_embed_forward (embedding.h) by the training kernels' forward-mode pass, keeping G, G' in
// cache (as se_a_embed_forward does) and each evaluated row's whole tape in tape (row stride
// tape_ld = tape_width), so that se_a_embed_param_grad needs no forward pass of its own.
template <typename T>
void se_a_embed_tape_forward(const T* env, int64_t nat, const std::vector<int>& sel,
                             const std::vector<EmbedNet<T>>& nets, int ng, T* out, T* cache, int ldc, T* tape,
                             int tape_ld) {
  int nnei = 0, maxsel = 1;
  for (int s : sel) { nnei += s; maxsel = std::max(maxsel, s); }
  const T scale = T(1) / T(nnei);
  std::vector<TrainNet<T>> tn;
  for (const auto& n : nets) tn.emplace_back(n);
  const int ldg = tn.empty() ? 0 : tn[0].ldg;
#pragma omp parallel
  {
    std::vector<TrainTape<T>> tapes;
    for (size_t t = 0; t < nets.size(); ++t) tapes.emplace_back(tn[t], maxsel);
    std::vector<T> t4(4 * ldg);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      std::fill(t4.begin(), t4.end(), T(0));
      int off = 0;
      for (size_t t = 0; t < nets.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        const int rows = sel[t], slot0 = off;
        off += rows;
        if (rows == 0) continue;
        const int p = tail_start(e, rows);
        auto& tp = tapes[t];
        train_forward(tn[t], p + 1, e, tp);
        const T* G = tp.a.back().data();
        if (cache) store_rows(G, tp.da.back().data(), ldg, p + 1, cache + (i * nnei + slot0) * 2 * int64_t(ldc), ldc);
        if (tape) store_tape(tn[t], tp, p + 1, tape + (i * nnei + slot0) * int64_t(tape_ld), tape_ld);
        accumulate_block(G, ldg, e, p, rows, scale, t4.data());
      }
      store_transposed(t4.data(), ldg, ng, out + i * ng * 4);
    }
  }
}

// The autograd operator's two sweeps: mode 0 (backward: cotangent gT on T; genv_out and
// pgrad) and mode 1 (double backward: gT and ggenv; ggT_out and pgrad).
template <typename T>
void se_a_embed_train_sweep(int mode, const T* env, const T* gT, const T* ggenv, int64_t nat,
                            const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets, int ng,
                            T* genv_out, T* ggT_out, T* pgrad) {
  if (mode == 0) se_a_embed_param_grad<T>(env, gT, nullptr, nullptr, nat, sel, nets, ng, genv_out, nullptr, pgrad);
  else se_a_embed_param_grad<T>(env, nullptr, gT, ggenv, nat, sel, nets, ng, nullptr, ggT_out, pgrad);
}

// ggT = dL/dgT for a cotangent a on dL/dR~ (see se_a_embed_param_grad), without weight gradients.
// cache: what se_a_embed_forward stored (G, G' of the evaluated rows, stride 2 ldc), or null
// to evaluate the nets again.
template <typename T>
void se_a_embed_ggt(const T* env, const T* a, int64_t nat, const std::vector<int>& sel,
                    const std::vector<EmbedNet<T>>& nets, int ng, int width, T* ggT_out, const T* cache = nullptr,
                    int ldc = 0) {
  const EmbedPlan<T> plan(sel, nets, ng, width);
  const int nnei = plan.nnei, ldg = plan.ldg;
  const int64_t wsize = plan.wsize;
  const T scale = plan.scale;
#pragma omp parallel
  {
    std::vector<T> work(4 * wsize), g(int64_t(plan.maxsel) * ldg), dg(int64_t(plan.maxsel) * ldg), q4(4 * ldg);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      std::fill(q4.begin(), q4.end(), T(0));
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        const int rows = sel[t], p = tail_start(e, rows), slot0 = off;
        off += rows;
        if (rows == 0) continue;
        const BlockRows<T> r = block_rows(plan.packed[t], p, e, cache ? cache + (i * nnei + slot0) * 2 * int64_t(ldc) : nullptr,
                                          ldc, g.data(), dg.data(), ldg, work.data(), wsize);
        for (int j = 0; j <= p; ++j) {
          T sa[4];
          row_cotangent(a + (i * nnei + slot0) * 4, j, j == p ? rows : j + 1, scale, sa);
          add_ggt_row(q4.data(), ldg, r.g(j), r.dg(j), sa, e + j * 4);
        }
      }
      store_transposed(q4.data(), ldg, ng, ggT_out + i * ng * 4);
    }
  }
}

}  // namespace dpp
