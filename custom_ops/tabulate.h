// Tabulated se_e2_a embedding fused with the contraction G^T R~ (DP Compress; Lu et al.,
// JCTC 18 (2022) 5559). Plain C++ (no Paddle types).
//
// Each embedding net G: R -> R^ng is replaced by piecewise polynomials in s = R~[0]: on interval
// k starting at x_k, G(s) = sum_p c[k][p] (s - x_k)^p, p < K (K = 6: 5th order, K = 4: 3rd).
// Two uniform grids: [lower, upper) with stride h1, [upper, ext) with stride h2 (= 10 h1);
// s below lower or from ext on is clamped to the table's ends (G constant there, dG/ds = 0)
// and counted.
//
// Per centre atom i (all of one centre type), with scale = 1/nnei:
//   forward : T[i, g, c]  = scale sum_j G_j[g] R~_ij[c]
//   backward: dR~_ij[c]   = scale sum_g G_j[g] gT[i, g, c]
//             dR~_ij[0]  += scale sum_g G'_j[g] sum_c gT[i, g, c] R~_ij[c]
//   double backward (the backward is linear in gT; its adjoint for a cotangent A on dR~):
//             ggT[i, g, c] = scale sum_j (G_j[g] A_ij[c] + A_ij[0] G'_j[g] R~_ij[c])
// Within a neighbour-type block, trailing rows equal to the block's last row (padded slots:
// they all hold -davg/dstd) are evaluated once and weighted by their number; any rows that are
// equal give equal terms, so this is exact whatever the rows are.
//
// Table memory: coef[net][interval][K][ldg], ldg = ng padded to 8 values (a whole number of
// vectors at every width of simd.h), so that a neighbour reads one contiguous block of K * ldg
// values; per-thread scratch is O(nnei + ldg).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace dpp {

typedef double TabVec __attribute__((vector_size(DPP_VEC_BYTES)));
constexpr int kTabLanes = DPP_VEC_BYTES / 8;
// Column vectors per chunk of the forward contraction: 4 per vector, 16 (AVX-512) or 8 in all.
constexpr int kTabChunk = kVecRegs / 8;

inline TabVec tab_load(const double* p) {
  TabVec v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
inline void tab_store(double* p, const TabVec& v) { __builtin_memcpy(p, &v, sizeof(v)); }
inline double tab_hsum(const TabVec& v) {
  double s = 0;
  for (int k = 0; k < kTabLanes; ++k) s += v[k];
  return s;
}

// One net's table: info = [lower, upper, ext, h1, h2, n1, n2, unused].
struct TableView {
  const double* coef;  // (n1 + n2) x K x ldg
  double lower, upper, ext, h1, h2;
  int n1, n2;
  TableView(const double* c, const double* info)
      : coef(c), lower(info[0]), upper(info[1]), ext(info[2]), h1(info[3]), h2(info[4]),
        n1(int(info[5])), n2(int(info[6])) {}
};

// The interval of s and the offset t = s - x_k; `live` = 0 where s was clamped (G' = 0 there).
struct Where {
  const double* c;
  double t, live;
  bool out;
};

inline Where locate(const TableView& tb, int K, int ldg, double s) {
  const int64_t block = int64_t(K) * ldg;
  if (s >= tb.lower && s < tb.upper) {
    int k = int((s - tb.lower) / tb.h1);
    k = std::min(k, tb.n1 - 1);
    return {tb.coef + k * block, s - (tb.lower + k * tb.h1), 1.0, false};
  }
  if (s >= tb.upper && s < tb.ext) {
    int k = int((s - tb.upper) / tb.h2);
    k = std::min(k, tb.n2 - 1);
    return {tb.coef + (tb.n1 + k) * block, s - (tb.upper + k * tb.h2), 1.0, false};
  }
  if (s < tb.lower) return {tb.coef, 0.0, 0.0, true};
  // at or beyond ext (or NaN): the end of the last interval
  const int last = tb.n1 + tb.n2 - 1;
  const double len = tb.n2 > 0 ? tb.h2 : tb.h1;
  return {tb.coef + last * block, len, 0.0, true};
}

// G (and G' when Deriv) on one vector of channels: Horner from the highest power; the
// derivative rides along (d <- d t + g before each step: one FMA, no multiplications by p).
template <int K, bool Deriv>
inline void horner(const double* c, int ldg, double t, TabVec& g, TabVec& dg) {
  g = tab_load(c + (K - 1) * ldg);
  if (Deriv) dg = TabVec{};
#pragma GCC unroll 8
  for (int p = K - 2; p >= 0; --p) {
    if (Deriv) dg = dg * t + g;
    g = g * t + tab_load(c + p * ldg);
  }
}

// The table block of an entry two ahead: the blocks are 2-5 KB and each is read once per atom.
inline void prefetch_block(const double* c, int n) {
  const char* p = reinterpret_cast<const char*>(c);
  for (int b = 0; b < n * 8; b += 64) __builtin_prefetch(p + b);
}

// One neighbour entry of an atom: its table block, offset, weight (multiplicity x scale) and
// row; `first`/`count`: the slots it stands for (for the gradient).
struct Entry {
  const double* c;
  double t, live, w;
  double r[4];
  int first, count;
};

// The entries of atom i (rows env_i, nnei x 4) over the type blocks; returns out-of-range count.
inline int64_t gather_entries(const double* env_i, const std::vector<int>& sel, const std::vector<TableView>& tabs,
                              int K, int ldg, double scale, std::vector<Entry>& ent) {
  ent.clear();
  int64_t nout = 0;
  int off = 0;
  for (size_t t = 0; t < sel.size(); ++t) {
    const int n = sel[t];
    if (n == 0) continue;
    const double* e = env_i + int64_t(off) * 4;
    const double* last = e + int64_t(n - 1) * 4;
    int m = 1;  // trailing rows equal to the last one
    while (m < n) {
      const double* r = e + int64_t(n - 1 - m) * 4;
      if (r[0] != last[0] || r[1] != last[1] || r[2] != last[2] || r[3] != last[3]) break;
      ++m;
    }
    const int ne = n - m + 1;
    for (int j = 0; j < ne; ++j) {
      const double* r = e + int64_t(j) * 4;
      const Where w = locate(tabs[t], K, ldg, r[0]);
      const int cnt = j == ne - 1 ? m : 1;
      if (w.out) nout += cnt;
      ent.push_back({w.c, w.t, w.live, scale * cnt, {r[0], r[1], r[2], r[3]}, off + j, cnt});
    }
    off += n;
  }
  return nout;
}

// T of one atom on NV vectors of channels starting at column `col`: 4 NV accumulators stay in
// registers over all entries (NV <= kTabChunk: 16 (AVX-512) or 8 accumulators + the values of G).
template <int K, int NV>
inline void contract_chunk(const std::vector<Entry>& ent, int ldg, int col, double* acc) {
  TabVec a[NV][4];
  for (int v = 0; v < NV; ++v)
    for (int c = 0; c < 4; ++c) a[v][c] = TabVec{};
  const size_t n = ent.size();
  for (size_t q = 0; q < n; ++q) {
    const Entry& en = ent[q];
    if (q + 2 < n) {
      const char* p = reinterpret_cast<const char*>(ent[q + 2].c + col);
      for (int k = 0; k < K; ++k)
        for (int b = 0; b < NV * int(sizeof(TabVec)); b += 64) __builtin_prefetch(p + k * ldg * 8 + b);
    }
    const double r0 = en.r[0] * en.w, r1 = en.r[1] * en.w, r2 = en.r[2] * en.w, r3 = en.r[3] * en.w;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      TabVec g, dg;
      horner<K, false>(en.c + col + v * kTabLanes, ldg, en.t, g, dg);
      a[v][0] += g * r0;
      a[v][1] += g * r1;
      a[v][2] += g * r2;
      a[v][3] += g * r3;
    }
  }
  for (int v = 0; v < NV; ++v)
    for (int c = 0; c < 4; ++c) tab_store(acc + c * ldg + col + v * kTabLanes, a[v][c]);
}

// Threads over atoms; every call of one atom touches only its own rows.
// out: nat x ng x 4. Returns the number of inputs outside the tables.
template <int K>
int64_t tabulate_forward(const double* env, int64_t nat, const std::vector<int>& sel,
                         const std::vector<TableView>& tabs, int ng, int ldg, double* out) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  const double scale = 1.0 / nnei;
  const int nv = ldg / kTabLanes;
  int64_t nout = 0;
#pragma omp parallel reduction(+ : nout)
  {
    std::vector<Entry> ent;
    ent.reserve(nnei);
    std::vector<double> acc(4 * size_t(ldg));  // T transposed: 4 x ldg
#pragma omp for schedule(dynamic, 16)
    for (int64_t i = 0; i < nat; ++i) {
      nout += gather_entries(env + i * nnei * 4, sel, tabs, K, ldg, scale, ent);
      int v = 0;
      for (; v + kTabChunk <= nv; v += kTabChunk) contract_chunk<K, kTabChunk>(ent, ldg, v * kTabLanes, acc.data());
      switch (nv - v) {
        case 3: contract_chunk<K, 3>(ent, ldg, v * kTabLanes, acc.data()); break;
        case 2: contract_chunk<K, 2>(ent, ldg, v * kTabLanes, acc.data()); break;
        case 1: contract_chunk<K, 1>(ent, ldg, v * kTabLanes, acc.data()); break;
        default: break;
      }
      double* ti = out + i * ng * 4;
      for (int g = 0; g < ng; ++g)
        for (int c = 0; c < 4; ++c) ti[g * 4 + c] = acc[c * ldg + g];
    }
  }
  return nout;
}

// genv: nat x nnei x 4 from gT: nat x ng x 4.
template <int K>
void tabulate_backward(const double* env, const double* gT, int64_t nat, const std::vector<int>& sel,
                       const std::vector<TableView>& tabs, int ng, int ldg, double* genv) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  const double scale = 1.0 / nnei;
  const int nv = ldg / kTabLanes;
#pragma omp parallel
  {
    std::vector<Entry> ent;
    ent.reserve(nnei);
    std::vector<double> gt(4 * size_t(ldg), 0.0);  // gT transposed: 4 x ldg, zero padded
#pragma omp for schedule(dynamic, 16)
    for (int64_t i = 0; i < nat; ++i) {
      gather_entries(env + i * nnei * 4, sel, tabs, K, ldg, 1.0, ent);
      const double* gti = gT + i * ng * 4;
      for (int g = 0; g < ng; ++g)
        for (int c = 0; c < 4; ++c) gt[c * ldg + g] = gti[g * 4 + c];
      double* ge = genv + i * nnei * 4;
      for (size_t q = 0; q < ent.size(); ++q) {
        const Entry& en = ent[q];
        if (q + 2 < ent.size()) prefetch_block(ent[q + 2].c, K * ldg);
        TabVec s0 = {}, s1 = {}, s2 = {}, s3 = {}, sd = {};
        for (int v = 0; v < nv; ++v) {
          TabVec g, dg;
          horner<K, true>(en.c + v * kTabLanes, ldg, en.t, g, dg);
          const int o = v * kTabLanes;
          const TabVec t0 = tab_load(gt.data() + o), t1 = tab_load(gt.data() + ldg + o),
                       t2 = tab_load(gt.data() + 2 * ldg + o), t3 = tab_load(gt.data() + 3 * ldg + o);
          s0 += g * t0;
          s1 += g * t1;
          s2 += g * t2;
          s3 += g * t3;
          sd += dg * (t0 * en.r[0] + t1 * en.r[1] + t2 * en.r[2] + t3 * en.r[3]);
        }
        const double d0 = scale * (tab_hsum(s0) + en.live * tab_hsum(sd)), d1 = scale * tab_hsum(s1),
                     d2 = scale * tab_hsum(s2), d3 = scale * tab_hsum(s3);
        for (int k = 0; k < en.count; ++k) {
          double* row = ge + int64_t(en.first + k) * 4;
          row[0] = d0;
          row[1] = d1;
          row[2] = d2;
          row[3] = d3;
        }
      }
    }
  }
}

// ggT: nat x ng x 4 from the cotangent A (gg_env): nat x nnei x 4.
template <int K>
void tabulate_double_backward(const double* env, const double* ggenv, int64_t nat, const std::vector<int>& sel,
                              const std::vector<TableView>& tabs, int ng, int ldg, double* ggT) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  const double scale = 1.0 / nnei;
  const int nv = ldg / kTabLanes;
#pragma omp parallel
  {
    std::vector<Entry> ent;
    ent.reserve(nnei);
    std::vector<double> acc(4 * size_t(ldg));
#pragma omp for schedule(dynamic, 16)
    for (int64_t i = 0; i < nat; ++i) {
      gather_entries(env + i * nnei * 4, sel, tabs, K, ldg, 1.0, ent);
      std::fill(acc.begin(), acc.end(), 0.0);
      const double* ai = ggenv + i * nnei * 4;
      for (const Entry& en : ent) {
        double a[4] = {0, 0, 0, 0};  // the cotangents of the rows this entry stands for, summed
        for (int k = 0; k < en.count; ++k)
          for (int c = 0; c < 4; ++c) a[c] += ai[int64_t(en.first + k) * 4 + c];
        for (int c = 0; c < 4; ++c) a[c] *= scale;
        const double b = a[0] * en.live;
        for (int v = 0; v < nv; ++v) {
          TabVec g, dg;
          horner<K, true>(en.c + v * kTabLanes, ldg, en.t, g, dg);
          const int o = v * kTabLanes;
          const TabVec bd = b * dg;
          for (int c = 0; c < 4; ++c) {
            double* p = acc.data() + c * ldg + o;
            tab_store(p, tab_load(p) + g * a[c] + bd * en.r[c]);
          }
        }
      }
      double* ti = ggT + i * ng * 4;
      for (int g = 0; g < ng; ++g)
        for (int c = 0; c < 4; ++c) ti[g * 4 + c] = acc[c * ldg + g];
    }
  }
}

}  // namespace dpp
