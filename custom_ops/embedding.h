// Fused se_e2_a embedding for inference: per centre atom, the embedding nets of all its
// neighbour slots and the contraction T = (1/nnei) sum_j G(s_j)^T R~_j, in one cache-resident
// pass; the backward recomputes G and dG/ds by forward-mode differentiation (the net has a
// scalar input s = R~_j[0]) instead of storing activations, so memory stays O(threads).
// Plain C++ (no Paddle types).
//
//   forward : T[i, g, c]   = (1/nnei) sum_j G_j[g] R~_ij[c]
//   backward: dR~_ij[c]    = (1/nnei) sum_g G_j[g] gT[i, g, c]
//             dR~_ij[0]   += (1/nnei) sum_g G'_j[g] sum_c gT[i, g, c] R~_ij[c]
// Weight gradients (training): embedding_train.h.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "activation.h"

namespace dpp {

// One dense layer of an embedding net (DeePMD-kit conventions): y = tanh(x W + b) [* idt],
// plus x when n_out == n_in, or [x, x] when n_out == 2 n_in.
template <typename T>
struct EmbedLayer {
  const T* w;    // n_in x n_out
  const T* b;    // n_out
  const T* idt;  // n_out or nullptr
  int n_in, n_out;
};

template <typename T>
using EmbedNet = std::vector<EmbedLayer<T>>;

// ---------------------------------------------------------------- register-blocked layers
// Activations are stored with a padded row length (a multiple of one 64-byte vector) and the
// weights are packed to match, so that the GEMM below runs on whole vectors: 4 rows x one
// vector of columns per step, each weight vector reused 4 (8 with tangents) times.
typedef double VecD __attribute__((vector_size(64)));
typedef float VecF __attribute__((vector_size(64)));
template <typename T>
struct VecOf;
template <>
struct VecOf<double> { typedef VecD type; };
template <>
struct VecOf<float> { typedef VecF type; };
template <typename T>
using Vec = typename VecOf<T>::type;  // (an attribute on an alias template would be dropped)
template <typename T>
constexpr int kLanes = int(64 / sizeof(T));

inline int pad_to(int n, int lanes) { return (n + lanes - 1) / lanes * lanes; }

template <typename T>
struct PackedLayer {
  std::vector<T> w, b, idt;  // w: n_in x nop; b, idt: nop (zero padded)
  int n_in = 0, n_out = 0, nop = 0;
  bool has_idt = false;
};

// One layer packed: w(k, c) for k < n_in, c < n_out; b, idt may be null (0 and 1).
template <typename T, typename W>
PackedLayer<T> pack_layer(int n_in, int n_out, W w, const T* b, const T* idt) {
  PackedLayer<T> P;
  P.n_in = n_in;
  P.n_out = n_out;
  P.nop = pad_to(n_out, kLanes<T>);
  P.w.assign(size_t(n_in) * P.nop, T(0));
  P.b.assign(P.nop, T(0));
  P.idt.assign(P.nop, T(1));
  for (int k = 0; k < n_in; ++k)
    for (int c = 0; c < n_out; ++c) P.w[size_t(k) * P.nop + c] = w(k, c);
  for (int c = 0; c < n_out; ++c) {
    if (b) P.b[c] = b[c];
    if (idt) P.idt[c] = idt[c];
  }
  P.has_idt = idt != nullptr;
  return P;
}

template <typename T>
std::vector<PackedLayer<T>> pack_net(const EmbedNet<T>& net) {
  std::vector<PackedLayer<T>> out;
  for (const auto& L : net)
    out.push_back(pack_layer<T>(L.n_in, L.n_out, [&](int k, int c) { return L.w[int64_t(k) * L.n_out + c]; }, L.b,
                                L.idt));
  return out;
}

template <typename T>
inline Vec<T> vload(const T* p) {
  Vec<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline void vstore(T* p, const Vec<T>& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
static_assert(sizeof(Vec<double>) == 64 && sizeof(Vec<float>) == 64, "64-byte vectors");

// Z = B + X W (and ZP = DX W when Tangent): X, DX rows x ni with row stride ldx; Z, ZP rows x nop.
template <typename T, bool Tangent>
void gemm_bias(const T* X, const T* DX, int ldx, int rows, const PackedLayer<T>& P, T* Z, T* ZP) {
  constexpr int L = kLanes<T>;
  const int ni = P.n_in, nop = P.nop, nv = nop / L;
  const T* W = P.w.data();
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* x0 = X + int64_t(r) * ldx;
    const T* dx0 = Tangent ? DX + int64_t(r) * ldx : nullptr;
    for (int cv = 0; cv < nv; ++cv) {
      const Vec<T> b = vload(P.b.data() + cv * L);
      Vec<T> a0 = b, a1 = b, a2 = b, a3 = b;
      Vec<T> d0 = {}, d1 = {}, d2 = {}, d3 = {};
      for (int k = 0; k < ni; ++k) {
        const Vec<T> w = vload(W + int64_t(k) * nop + cv * L);
        a0 += x0[k] * w;
        a1 += x0[ldx + k] * w;
        a2 += x0[2 * ldx + k] * w;
        a3 += x0[3 * ldx + k] * w;
        if (Tangent) {
          d0 += dx0[k] * w;
          d1 += dx0[ldx + k] * w;
          d2 += dx0[2 * ldx + k] * w;
          d3 += dx0[3 * ldx + k] * w;
        }
      }
      T* z = Z + int64_t(r) * nop + cv * L;
      vstore(z, a0); vstore(z + nop, a1); vstore(z + 2 * nop, a2); vstore(z + 3 * nop, a3);
      if (Tangent) {
        T* zp = ZP + int64_t(r) * nop + cv * L;
        vstore(zp, d0); vstore(zp + nop, d1); vstore(zp + 2 * nop, d2); vstore(zp + 3 * nop, d3);
      }
    }
  }
  for (; r < rows; ++r) {
    const T* x0 = X + int64_t(r) * ldx;
    for (int cv = 0; cv < nv; ++cv) {
      Vec<T> a = vload(P.b.data() + cv * L), d = {};
      for (int k = 0; k < ni; ++k) {
        const Vec<T> w = vload(W + int64_t(k) * nop + cv * L);
        a += x0[k] * w;
        if (Tangent) d += DX[int64_t(r) * ldx + k] * w;
      }
      vstore(Z + int64_t(r) * nop + cv * L, a);
      if (Tangent) vstore(ZP + int64_t(r) * nop + cv * L, d);
    }
  }
}

// The skip connection: y += x (n_out == n_in) or y += [x, x] (n_out == 2 n_in).
template <typename T>
inline void add_skip(T* __restrict y, const T* __restrict x, int ni, int no) {
#pragma omp simd
  for (int c = 0; c < ni; ++c) y[c] += x[c];
  if (no == 2 * ni) {
#pragma omp simd
    for (int c = 0; c < ni; ++c) y[ni + c] += x[c];
  }
}

// Its transpose for cotangents: xb += yb (n_out == n_in) or xb += yb[:n_in] + yb[n_in:].
template <typename T>
inline void add_skip_transposed(T* __restrict xb, const T* __restrict yb, int ni, int no) {
#pragma omp simd
  for (int c = 0; c < ni; ++c) xb[c] += no == 2 * ni ? yb[c] + yb[ni + c] : yb[c];
}

// One layer on padded rows: y = tanh(x W + b) [* idt] (+ x or [x, x]); dy its s-derivative.
template <typename T, bool Tangent>
void embed_layer(const PackedLayer<T>& P, int rows, const T* x, const T* dx, int ldx, T* y, T* dy) {
  gemm_bias<T, Tangent>(x, dx, ldx, rows, P, y, dy);
  const int nop = P.nop, ni = P.n_in, no = P.n_out;
  const T* idt = P.idt.data();
  for (int r = 0; r < rows; ++r) {
    T* yr = y + int64_t(r) * nop;
    T* dyr = Tangent ? dy + int64_t(r) * nop : nullptr;
#pragma omp simd
    for (int c = 0; c < nop; ++c) {
      const T t = tanh_fast(yr[c]);
      if (Tangent) dyr[c] = (T(1) - t * t) * dyr[c] * idt[c];
      yr[c] = t * idt[c];
    }
    if (no == ni || no == 2 * ni) {
      add_skip(yr, x + int64_t(r) * ldx, ni, no);
      if (Tangent) add_skip(dyr, dx + int64_t(r) * ldx, ni, no);
    }
  }
}

// G (and G' = dG/ds when dg != nullptr) for `rows` inputs s (stride `s_stride`); G rows have
// length ldg = the padded width of the last layer. work: 4 buffers of rows x max padded width.
template <typename T>
void embed_net(const std::vector<PackedLayer<T>>& net, int rows, const T* s, int s_stride, T* g, T* dg, T* work,
               int64_t wsize) {
  T* a = work;
  T* da = work + wsize;
  T* b = work + 2 * wsize;
  T* db = work + 3 * wsize;
  for (int r = 0; r < rows; ++r) {
    a[r] = s[int64_t(r) * s_stride];
    da[r] = T(1);
  }
  int ld = 1;
  const int nl = int(net.size());
  for (int l = 0; l < nl; ++l) {
    const bool last = l == nl - 1;
    T* out = last ? g : b;
    T* dout = last ? dg : db;
    if (dg) embed_layer<T, true>(net[l], rows, a, da, ld, out, dout);
    else embed_layer<T, false>(net[l], rows, a, nullptr, ld, out, nullptr);
    ld = net[l].nop;
    if (!last) {
      std::swap(a, b);
      std::swap(da, db);
    }
  }
}

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
      T* t0 = t4.data();
      T* t1 = t0 + ldg;
      T* t2 = t1 + ldg;
      T* t3 = t2 + ldg;
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        const int rows = sel[t], p = tail_start(e, rows);
        off += rows;
        if (rows == 0) continue;
        embed_net(packed[t], p + 1, e, 4, g.data(), cache ? dg.data() : nullptr, work.data(), wsize);
        if (cache) store_rows(g.data(), dg.data(), ldg, p + 1, cache + (i * nnei + off - rows) * 2 * int64_t(ldc), ldc);
        for (int j = 0; j <= p; ++j) {
          const T* gj = g.data() + int64_t(j) * ldg;
          const T w = j == p ? scale * T(rows - p) : scale;  // the tail row stands for rows - p slots
          const T r0 = e[j * 4] * w, r1 = e[j * 4 + 1] * w, r2 = e[j * 4 + 2] * w, r3 = e[j * 4 + 3] * w;
#pragma omp simd
          for (int k = 0; k < ldg; ++k) {
            t0[k] += gj[k] * r0;
            t1[k] += gj[k] * r1;
            t2[k] += gj[k] * r2;
            t3[k] += gj[k] * r3;
          }
        }
      }
      store_transposed(t0, ldg, ng, out + i * ng * 4);
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
