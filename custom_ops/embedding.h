// Fused se_e2_a embedding for inference: per centre atom, the embedding nets of all its
// neighbour slots and the contraction T = (1/nnei) sum_j G(s_j)^T R~_j, in one cache-resident
// pass; the backward recomputes G and dG/ds by forward-mode differentiation (the net has a
// scalar input s = R~_j[0]) instead of storing activations, so memory stays O(threads).
// Plain C++ (no Paddle types).
//
//   forward : T[i, g, c]   = (1/nnei) sum_j G_j[g] R~_ij[c]
//   backward: dR~_ij[c]    = (1/nnei) sum_g G_j[g] gT[i, g, c]
//             dR~_ij[0]   += (1/nnei) sum_g G'_j[g] sum_c gT[i, g, c] R~_ij[c]
// No gradient reaches the weights: training uses the plain-Paddle layers.
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

template <typename T>
std::vector<PackedLayer<T>> pack_net(const EmbedNet<T>& net) {
  std::vector<PackedLayer<T>> out;
  for (const auto& L : net) {
    PackedLayer<T> P;
    P.n_in = L.n_in;
    P.n_out = L.n_out;
    P.nop = pad_to(L.n_out, kLanes<T>);
    P.w.assign(size_t(P.n_in) * P.nop, T(0));
    P.b.assign(P.nop, T(0));
    P.idt.assign(P.nop, T(1));
    for (int k = 0; k < L.n_in; ++k)
      for (int c = 0; c < L.n_out; ++c) P.w[size_t(k) * P.nop + c] = L.w[int64_t(k) * L.n_out + c];
    for (int c = 0; c < L.n_out; ++c) {
      P.b[c] = L.b[c];
      if (L.idt) P.idt[c] = L.idt[c];
    }
    P.has_idt = L.idt != nullptr;
    out.push_back(std::move(P));
  }
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
      const T* xr = x + int64_t(r) * ldx;
      for (int c = 0; c < no; ++c) yr[c] += xr[c % ni];
      if (Tangent) {
        const T* dxr = dx + int64_t(r) * ldx;
        for (int c = 0; c < no; ++c) dyr[c] += dxr[c % ni];
      }
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

// env: nat x nnei x 4; nets[t] for neighbour type t with sel[t] slots; T: nat x ng x 4.
template <typename T>
void se_a_embed_forward(const T* env, int64_t nat, const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets,
                        int ng, int width, T* out) {
  const EmbedPlan<T> plan(sel, nets, ng, width);
  const int nnei = plan.nnei, ldg = plan.ldg;
  const int64_t wsize = plan.wsize;
  const T scale = plan.scale;
  const auto& packed = plan.packed;
#pragma omp parallel
  {
    std::vector<T> work(4 * wsize), g(int64_t(plan.maxsel) * ldg);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      T* ti = out + i * ng * 4;
      for (int k = 0; k < ng * 4; ++k) ti[k] = T(0);
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        embed_net(packed[t], sel[t], e, 4, g.data(), (T*)nullptr, work.data(), wsize);
        for (int j = 0; j < sel[t]; ++j) {
          const T* gj = g.data() + int64_t(j) * ldg;
          const T r0 = e[j * 4] * scale, r1 = e[j * 4 + 1] * scale, r2 = e[j * 4 + 2] * scale, r3 = e[j * 4 + 3] * scale;
#pragma omp simd
          for (int k = 0; k < ng; ++k) {
            ti[k * 4] += gj[k] * r0;
            ti[k * 4 + 1] += gj[k] * r1;
            ti[k * 4 + 2] += gj[k] * r2;
            ti[k * 4 + 3] += gj[k] * r3;
          }
        }
        off += sel[t];
      }
    }
  }
}

template <typename T>
void se_a_embed_backward(const T* env, const T* gT, int64_t nat, const std::vector<int>& sel,
                         const std::vector<EmbedNet<T>>& nets, int ng, int width, T* genv) {
  const EmbedPlan<T> plan(sel, nets, ng, width);
  const int nnei = plan.nnei, ldg = plan.ldg;
  const int64_t wsize = plan.wsize;
  const T scale = plan.scale;
  const auto& packed = plan.packed;
#pragma omp parallel
  {
    std::vector<T> work(4 * wsize), g(int64_t(plan.maxsel) * ldg), dg(int64_t(plan.maxsel) * ldg);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      const T* gti = gT + i * ng * 4;
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        T* ge = genv + (i * nnei + off) * 4;
        embed_net(packed[t], sel[t], e, 4, g.data(), dg.data(), work.data(), wsize);
        for (int j = 0; j < sel[t]; ++j) {
          const T* gj = g.data() + int64_t(j) * ldg;
          const T* dgj = dg.data() + int64_t(j) * ldg;
          const T e0 = e[j * 4], e1 = e[j * 4 + 1], e2 = e[j * 4 + 2], e3 = e[j * 4 + 3];
          T a0 = 0, a1 = 0, a2 = 0, a3 = 0, ds = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, ds)
          for (int k = 0; k < ng; ++k) {
            const T t0 = gti[k * 4], t1 = gti[k * 4 + 1], t2 = gti[k * 4 + 2], t3 = gti[k * 4 + 3];
            a0 += gj[k] * t0;
            a1 += gj[k] * t1;
            a2 += gj[k] * t2;
            a3 += gj[k] * t3;
            ds += dgj[k] * (t0 * e0 + t1 * e1 + t2 * e2 + t3 * e3);
          }
          ge[j * 4] = (a0 + ds) * scale;
          ge[j * 4 + 1] = a1 * scale;
          ge[j * 4 + 2] = a2 * scale;
          ge[j * 4 + 3] = a3 * scale;
        }
        off += sel[t];
      }
    }
  }
}

// ------------------------------------------------------------------------------ training
// For training on forces the weights need gradients of T and of dT/dR~ (the double gradient).
// The tape keeps, per layer l, its input a_l and tangent da_l (= d a_l / ds), tanh output t_l
// and tangent pre-activation zp_l = da_l W_l, so that a reverse sweep over the forward-mode
// pass gives weight gradients for cotangents on G and G' = dG/ds.
template <typename T>
struct NetTape {
  std::vector<std::vector<T>> a, da, t, zp;  // a[l], da[l]: rows x n_in(l); t[l], zp[l]: rows x n_out(l)
  std::vector<T> abar, dabar, ybar, dybar, zbar, zbarp;
  void reserve(const EmbedNet<T>& net, int rows) {
    const size_t nl = net.size();
    a.resize(nl + 1); da.resize(nl + 1); t.resize(nl); zp.resize(nl);
    int width = 1;
    for (size_t l = 0; l < nl; ++l) {
      a[l].resize(size_t(rows) * net[l].n_in); da[l].resize(size_t(rows) * net[l].n_in);
      t[l].resize(size_t(rows) * net[l].n_out); zp[l].resize(size_t(rows) * net[l].n_out);
      width = std::max(width, net[l].n_out);
    }
    a[nl].resize(size_t(rows) * net[nl - 1].n_out); da[nl].resize(size_t(rows) * net[nl - 1].n_out);
    for (auto* v : {&abar, &dabar, &ybar, &dybar, &zbar, &zbarp}) v->resize(size_t(rows) * width);
  }
};

// forward-mode pass recording the tape; G = a[nl], G' = da[nl]
template <typename T>
void tape_forward(const EmbedNet<T>& net, int rows, const T* s, int stride, NetTape<T>& tp) {
  for (int r = 0; r < rows; ++r) {
    tp.a[0][r] = s[int64_t(r) * stride];
    tp.da[0][r] = T(1);
  }
  for (size_t l = 0; l < net.size(); ++l) {
    const auto& L = net[l];
    const int ni = L.n_in, no = L.n_out;
    for (int r = 0; r < rows; ++r) {
      const T* x = tp.a[l].data() + int64_t(r) * ni;
      const T* dx = tp.da[l].data() + int64_t(r) * ni;
      T* z = tp.t[l].data() + int64_t(r) * no;
      T* zp = tp.zp[l].data() + int64_t(r) * no;
      T* y = tp.a[l + 1].data() + int64_t(r) * no;
      T* dy = tp.da[l + 1].data() + int64_t(r) * no;
#pragma omp simd
      for (int c = 0; c < no; ++c) { z[c] = L.b[c]; zp[c] = T(0); }
      for (int k = 0; k < ni; ++k) {
        const T xa = x[k], dxa = dx[k];
        const T* wk = L.w + int64_t(k) * no;
#pragma omp simd
        for (int c = 0; c < no; ++c) { z[c] += xa * wk[c]; zp[c] += dxa * wk[c]; }
      }
#pragma omp simd
      for (int c = 0; c < no; ++c) {
        const T th = tanh_fast(z[c]);
        const T sc = L.idt ? L.idt[c] : T(1);
        z[c] = th;  // t
        y[c] = sc * th;
        dy[c] = sc * (T(1) - th * th) * zp[c];
      }
      if (no == ni || no == 2 * ni)
        for (int c = 0; c < no; ++c) { y[c] += x[c % ni]; dy[c] += dx[c % ni]; }
    }
  }
}

// Reverse sweep: cotangents gbar (on G) and dgbar (on G', may be null), rows x ng; adds the
// weight gradients into grads[l] = {W, b, idt} (idt may be null).
template <typename T>
void tape_reverse(const EmbedNet<T>& net, int rows, NetTape<T>& tp, const T* gbar, const T* dgbar,
                  const std::vector<std::array<T*, 3>>& grads) {
  const int nl = int(net.size());
  const int ng = net[nl - 1].n_out;
  std::copy(gbar, gbar + int64_t(rows) * ng, tp.ybar.begin());
  if (dgbar) std::copy(dgbar, dgbar + int64_t(rows) * ng, tp.dybar.begin());
  else std::fill(tp.dybar.begin(), tp.dybar.begin() + int64_t(rows) * ng, T(0));
  for (int l = nl - 1; l >= 0; --l) {
    const auto& L = net[l];
    const int ni = L.n_in, no = L.n_out;
    T* gw = grads[l][0];
    T* gb = grads[l][1];
    T* gidt = grads[l][2];
    for (int r = 0; r < rows; ++r) {
      const T* t = tp.t[l].data() + int64_t(r) * no;
      const T* zp = tp.zp[l].data() + int64_t(r) * no;
      const T* yb = tp.ybar.data() + int64_t(r) * no;
      const T* dyb = tp.dybar.data() + int64_t(r) * no;
      T* zb = tp.zbar.data() + int64_t(r) * no;
      T* zbp = tp.zbarp.data() + int64_t(r) * no;
#pragma omp simd
      for (int c = 0; c < no; ++c) {
        const T sc = L.idt ? L.idt[c] : T(1);
        const T q = T(1) - t[c] * t[c];
        zbp[c] = sc * dyb[c] * q;
        const T tb = sc * yb[c] - T(2) * sc * dyb[c] * zp[c] * t[c];
        zb[c] = tb * q;
        gb[c] += zb[c];
      }
      if (gidt)
        for (int c = 0; c < no; ++c) gidt[c] += yb[c] * t[c] + dyb[c] * (T(1) - t[c] * t[c]) * zp[c];
      const T* x = tp.a[l].data() + int64_t(r) * ni;
      const T* dx = tp.da[l].data() + int64_t(r) * ni;
      for (int k = 0; k < ni; ++k) {
        const T xa = x[k], dxa = dx[k];
        T* gwk = gw + int64_t(k) * no;
#pragma omp simd
        for (int c = 0; c < no; ++c) gwk[c] += xa * zb[c] + dxa * zbp[c];
      }
    }
    if (l == 0) break;
    // cotangents of this layer's input (the previous layer's output)
    for (int r = 0; r < rows; ++r) {
      const T* zb = tp.zbar.data() + int64_t(r) * no;
      const T* zbp = tp.zbarp.data() + int64_t(r) * no;
      const T* yb = tp.ybar.data() + int64_t(r) * no;
      const T* dyb = tp.dybar.data() + int64_t(r) * no;
      T* xb = tp.abar.data() + int64_t(r) * ni;
      T* dxb = tp.dabar.data() + int64_t(r) * ni;
      for (int k = 0; k < ni; ++k) {
        const T* wk = L.w + int64_t(k) * no;
        T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int c = 0; c < no; ++c) { s1 += zb[c] * wk[c]; s2 += zbp[c] * wk[c]; }
        xb[k] = s1;
        dxb[k] = s2;
      }
      if (no == ni || no == 2 * ni)
        for (int c = 0; c < no; ++c) { xb[c % ni] += yb[c]; dxb[c % ni] += dyb[c]; }
    }
    std::swap(tp.abar, tp.ybar);
    std::swap(tp.dabar, tp.dybar);
  }
}

// Sizes of the per-net parameter-gradient blocks, in the order W, b, idt per layer.
template <typename T>
int64_t net_param_count(const EmbedNet<T>& net) {
  int64_t n = 0;
  for (const auto& L : net) n += int64_t(L.n_in) * L.n_out + L.n_out + (L.idt ? L.n_out : 0);
  return n;
}

template <typename T>
std::vector<std::array<T*, 3>> net_grad_views(const EmbedNet<T>& net, T* base) {
  std::vector<std::array<T*, 3>> v;
  for (const auto& L : net) {
    std::array<T*, 3> g{base, base + int64_t(L.n_in) * L.n_out, nullptr};
    base += int64_t(L.n_in) * L.n_out + L.n_out;
    if (L.idt) { g[2] = base; base += L.n_out; }
    v.push_back(g);
  }
  return v;
}

// mode 0 (backward): given gT, genv_out = dL/dR~ and pgrad += dL/dtheta.
// mode 1 (double backward): given gT and gg_env (cotangent of genv), ggT_out and pgrad.
// pgrad: all nets' parameter gradients, flat in net order (zeroed by the caller).
template <typename T>
void se_a_embed_train_sweep(int mode, const T* env, const T* gT, const T* ggenv, int64_t nat,
                            const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets, int ng,
                            T* genv_out, T* ggT_out, T* pgrad) {
  int nnei = 0, maxsel = 0;
  for (int s : sel) { nnei += s; maxsel = std::max(maxsel, s); }
  const T scale = T(1) / T(nnei);
  std::vector<int64_t> poff(nets.size() + 1, 0);
  for (size_t t = 0; t < nets.size(); ++t) poff[t + 1] = poff[t] + net_param_count(nets[t]);
  const int64_t ptotal = poff.back();
#pragma omp parallel
  {
    std::vector<T> acc(ptotal, T(0));
    std::vector<NetTape<T>> tapes(nets.size());
    std::vector<std::vector<std::array<T*, 3>>> views(nets.size());
    for (size_t t = 0; t < nets.size(); ++t) {
      tapes[t].reserve(nets[t], sel[t]);
      views[t] = net_grad_views(nets[t], acc.data() + poff[t]);
    }
    std::vector<T> gbar(size_t(maxsel) * ng), dgbar(size_t(maxsel) * ng), u(ng);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      const T* gti = gT + i * ng * 4;
      if (mode == 1) std::fill(ggT_out + i * ng * 4, ggT_out + (i + 1) * ng * 4, T(0));
      int off = 0;
      for (size_t t = 0; t < nets.size(); ++t) {
        const int rows = sel[t];
        const T* e = env + (i * nnei + off) * 4;
        auto& tp = tapes[t];
        tape_forward(nets[t], rows, e, 4, tp);
        const T* G = tp.a.back().data();
        const T* Gp = tp.da.back().data();
        for (int j = 0; j < rows; ++j) {
          const T* ej = e + j * 4;
          const T* gj = G + int64_t(j) * ng;
          const T* gpj = Gp + int64_t(j) * ng;
          T* gb = gbar.data() + int64_t(j) * ng;
#pragma omp simd
          for (int k = 0; k < ng; ++k)
            u[k] = gti[k * 4] * ej[0] + gti[k * 4 + 1] * ej[1] + gti[k * 4 + 2] * ej[2] + gti[k * 4 + 3] * ej[3];
          if (mode == 0) {
            T a0 = 0, a1 = 0, a2 = 0, a3 = 0, ds = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, ds)
            for (int k = 0; k < ng; ++k) {
              a0 += gj[k] * gti[k * 4];
              a1 += gj[k] * gti[k * 4 + 1];
              a2 += gj[k] * gti[k * 4 + 2];
              a3 += gj[k] * gti[k * 4 + 3];
              ds += gpj[k] * u[k];
            }
            T* ge = genv_out + (i * nnei + off + j) * 4;
            ge[0] = (a0 + ds) * scale;
            ge[1] = a1 * scale;
            ge[2] = a2 * scale;
            ge[3] = a3 * scale;
#pragma omp simd
            for (int k = 0; k < ng; ++k) gb[k] = u[k] * scale;
          } else {
            const T* aj = ggenv + (i * nnei + off + j) * 4;
            T* ggt = ggT_out + i * ng * 4;
            T* dgb = dgbar.data() + int64_t(j) * ng;
#pragma omp simd
            for (int k = 0; k < ng; ++k) {
              ggt[k * 4] += scale * (gj[k] * aj[0] + aj[0] * gpj[k] * ej[0]);
              ggt[k * 4 + 1] += scale * (gj[k] * aj[1] + aj[0] * gpj[k] * ej[1]);
              ggt[k * 4 + 2] += scale * (gj[k] * aj[2] + aj[0] * gpj[k] * ej[2]);
              ggt[k * 4 + 3] += scale * (gj[k] * aj[3] + aj[0] * gpj[k] * ej[3]);
              gb[k] = scale * (gti[k * 4] * aj[0] + gti[k * 4 + 1] * aj[1] + gti[k * 4 + 2] * aj[2] + gti[k * 4 + 3] * aj[3]);
              dgb[k] = scale * aj[0] * u[k];
            }
          }
        }
        tape_reverse(nets[t], rows, tp, gbar.data(), mode == 1 ? dgbar.data() : nullptr, views[t]);
        off += rows;
      }
    }
#pragma omp critical
    for (int64_t k = 0; k < ptotal; ++k) pgrad[k] += acc[k];
  }
}

}  // namespace dpp
