// Fused se_e2_a embedding for inference: per centre atom, the embedding nets of all its
// neighbour slots and the contraction T = (1/nnei) sum_j G(s_j)^T R~_j, in one cache-resident
// pass; the backward recomputes G and dG/ds by forward-mode differentiation (the net has a
// scalar input s = R~_j[0]) instead of storing activations, so memory stays O(threads).
// Plain C++ (no Paddle types).
//
//   forward : T[i, g, c]   = (1/nnei) sum_j G_j[g] R~_ij[c]
//   backward: dR~_ij[c]    = (1/nnei) sum_g G_j[g] gT[i, g, c]
//             dR~_ij[0]   += (1/nnei) sum_g G'_j[g] sum_c gT[i, g, c] R~_ij[c]
// The nets: embed_net.h. Weight gradients (training): embedding_train.h.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "embed_net.h"

namespace dpp {

// Slots past the real neighbours of a type block are padding, all with the same row of R~
// (nearest first, padding last). tail_start returns p such that rows p..rows-1 are equal to
// the last row: the kernels evaluate rows 0..p and weight row p by rows - p. This is exact
// for any input (a block without padding gives p = rows - 1, weight 1).
template <typename T>
inline int tail_start(const T* e, int rows) {
  if (rows <= 1) return 0;
  const T* z = e + int64_t(rows - 1) * 4;
  int p = rows - 1;
  for (; p > 0; --p) {
    const T* r = e + int64_t(p - 1) * 4;
    if (r[0] != z[0] || r[1] != z[1] || r[2] != z[2] || r[3] != z[3]) break;
  }
  return p;
}

// G and G' of the evaluated rows 0..p of one type block: read from the cache that
// se_a_embed_forward filled (block_cache: the block's first row; row stride 2 ldc, G then G'), or
// evaluated by the net into g and dg (row stride ldg).
template <typename T>
struct BlockRows {
  const T *g0, *dg0;
  int64_t stride;
  const T* g(int j) const { return g0 + j * stride; }
  const T* dg(int j) const { return dg0 + j * stride; }
};

template <typename T>
BlockRows<T> block_rows(const std::vector<PackedLayer<T>>& net, int p, const T* e, const T* block_cache, int ldc,
                        T* g, T* dg, int ldg, T* work, int64_t wsize) {
  if (block_cache) return {block_cache, block_cache + ldc, 2 * int64_t(ldc)};
  embed_net(net, p + 1, e, 4, g, dg, work, wsize);
  return {g, dg, int64_t(ldg)};
}

// What the evaluation kernels share: packed nets, slot counts and per-thread buffer sizes.
template <typename T>
struct EmbedPlan {
  std::vector<std::vector<PackedLayer<T>>> packed;
  int nnei = 0, maxsel = 0, ldg = 0;
  int64_t wsize = 0;  // one work buffer: maxsel rows of the widest padded layer
  T scale;            // 1 / nnei
  EmbedPlan(const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets, int ng, int width) {
    for (int s : sel) { nnei += s; maxsel = std::max(maxsel, s); }
    scale = T(1) / T(nnei);
    for (const auto& n : nets) packed.push_back(pack_net(n));
    ldg = pad_to(ng, kLanes<T>);
    wsize = int64_t(maxsel) * pad_to(width, kLanes<T>);
  }
};

// T_i is accumulated per atom in a [4][ld] layout (column c of R~ is contiguous over the ng
// outputs) so that every loop over outputs runs on unit-stride vectors; transposed on store.
template <typename T>
inline void store_transposed(const T* t4, int ld, int ng, T* out) {  // out: ng x 4
  for (int k = 0; k < ng; ++k)
    for (int c = 0; c < 4; ++c) out[k * 4 + c] = t4[c * ld + k];
}
// T += scale sum_j G_j^T R~_j over a block's evaluated rows j = 0..p (row p, the first padded
// slot, stands for the rows - p identical slots from p on); t4 as above, G rows of length ld.
template <typename T>
__attribute__((always_inline)) inline void accumulate_block(const T* G, int ld, const T* e, int p, int rows, T scale,
                                                            T* t4) {
  T* __restrict t0 = t4;
  T* __restrict t1 = t4 + ld;
  T* __restrict t2 = t1 + ld;
  T* __restrict t3 = t2 + ld;
  for (int j = 0; j <= p; ++j) {
    const T* gj = G + int64_t(j) * ld;
    const T w = j == p ? scale * T(rows - p) : scale;
    const T r0 = e[j * 4] * w, r1 = e[j * 4 + 1] * w, r2 = e[j * 4 + 2] * w, r3 = e[j * 4 + 3] * w;
#pragma omp simd
    for (int k = 0; k < ld; ++k) {
      t0[k] += gj[k] * r0;
      t1[k] += gj[k] * r1;
      t2[k] += gj[k] * r2;
      t3[k] += gj[k] * r3;
    }
  }
}
template <typename T>
inline void load_transposed(const T* in, int ng, int ld, T* t4) {  // in: ng x 4
  for (int c = 0; c < 4; ++c)
    for (int k = 0; k < ng; ++k) t4[c * ld + k] = in[k * 4 + c];
}

// rows x [G | G'] into a cache with row stride 2 ldc
template <typename T>
inline void store_rows(const T* g, const T* dg, int ldg, int rows, T* cache, int ldc) {
  for (int j = 0; j < rows; ++j) {
    std::copy(g + int64_t(j) * ldg, g + int64_t(j + 1) * ldg, cache + j * 2 * int64_t(ldc));
    std::copy(dg + int64_t(j) * ldg, dg + int64_t(j + 1) * ldg, cache + j * 2 * int64_t(ldc) + ldc);
  }
}

// env: nat x nnei x 4; nets[t] for neighbour type t with sel[t] slots; T: nat x ng x 4.
// cache (optional): nat x nnei rows of stride 2 ldc that receive G and G' = dG/ds of the rows
// evaluated, so that the backward needs no second pass through the nets.
template <typename T>
void se_a_embed_forward(const T* env, int64_t nat, const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets,
                        int ng, int width, T* out, T* cache = nullptr, int ldc = 0) {
  const EmbedPlan<T> plan(sel, nets, ng, width);
  const int nnei = plan.nnei, ldg = plan.ldg;
  const int64_t wsize = plan.wsize;
  const T scale = plan.scale;
  const auto& packed = plan.packed;
#pragma omp parallel
  {
    std::vector<T> work(4 * wsize), g(int64_t(plan.maxsel) * ldg), dg(cache ? int64_t(plan.maxsel) * ldg : 0),
        t4(4 * ldg);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      std::fill(t4.begin(), t4.end(), T(0));
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        const int rows = sel[t], p = tail_start(e, rows);
        off += rows;
        if (rows == 0) continue;
        embed_net(packed[t], p + 1, e, 4, g.data(), cache ? dg.data() : nullptr, work.data(), wsize);
        if (cache) store_rows(g.data(), dg.data(), ldg, p + 1, cache + (i * nnei + off - rows) * 2 * int64_t(ldc), ldc);
        accumulate_block(g.data(), ldg, e, p, rows, scale, t4.data());
      }
      store_transposed(t4.data(), ldg, ng, out + i * ng * 4);
    }
  }
}

// Per row j of a type block, from gT (in the [4][ld] layout) and G_j, G'_j:
// u_j = gT R~_j and dL/dR~_j = (1/nnei) [G_j gT + e_0 G'_j . u_j]; returns the latter in ge[4].
template <typename T>
inline void row_gradient(const T* gt4, int ld, const T* gj, const T* gpj, const T* ej, T scale, T* u, T* ge) {
  const T* g0 = gt4;
  const T* g1 = gt4 + ld;
  const T* g2 = gt4 + 2 * ld;
  const T* g3 = gt4 + 3 * ld;
  T a0 = 0, a1 = 0, a2 = 0, a3 = 0, ds = 0;
  const T e0 = ej[0], e1 = ej[1], e2 = ej[2], e3 = ej[3];
#pragma omp simd reduction(+ : a0, a1, a2, a3, ds)
  for (int k = 0; k < ld; ++k) {
    const T uk = g0[k] * e0 + g1[k] * e1 + g2[k] * e2 + g3[k] * e3;
    u[k] = uk;
    a0 += gj[k] * g0[k];
    a1 += gj[k] * g1[k];
    a2 += gj[k] * g2[k];
    a3 += gj[k] * g3[k];
    ds += gpj[k] * uk;
  }
  ge[0] = (a0 + ds) * scale;
  ge[1] = a1 * scale;
  ge[2] = a2 * scale;
  ge[3] = a3 * scale;
}

// cached (optional): G and G' stored by se_a_embed_forward (row stride 2 ldc), read instead of
// evaluating the nets again.
template <typename T>
void se_a_embed_backward(const T* env, const T* gT, int64_t nat, const std::vector<int>& sel,
                         const std::vector<EmbedNet<T>>& nets, int ng, int width, T* genv, const T* cached = nullptr,
                         int ldc = 0) {
  const EmbedPlan<T> plan(sel, nets, ng, width);
  const int nnei = plan.nnei, ldg = plan.ldg;
  const int64_t wsize = plan.wsize;
  const T scale = plan.scale;
  const auto& packed = plan.packed;
#pragma omp parallel
  {
    std::vector<T> work(4 * wsize), g(int64_t(plan.maxsel) * ldg), dg(int64_t(plan.maxsel) * ldg), gt4(4 * ldg, T(0)),
        u(ldg);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      load_transposed(gT + i * ng * 4, ng, ldg, gt4.data());
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        T* ge = genv + (i * nnei + off) * 4;
        const int rows = sel[t], p = tail_start(e, rows);
        off += rows;
        if (rows == 0) continue;
        const BlockRows<T> r = block_rows(packed[t], p, e, cached ? cached + (i * nnei + off - rows) * 2 * int64_t(ldc) : nullptr,
                                          ldc, g.data(), dg.data(), ldg, work.data(), wsize);
        for (int j = 0; j <= p; ++j) row_gradient(gt4.data(), ldg, r.g(j), r.dg(j), e + j * 4, scale, u.data(), ge + j * 4);
        for (int j = p + 1; j < rows; ++j)  // identical slots, identical gradients
          for (int c = 0; c < 4; ++c) ge[j * 4 + c] = ge[p * 4 + c];
      }
    }
  }
}

}  // namespace dpp
