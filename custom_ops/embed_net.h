// The embedding nets of se_e2_a as register-blocked dense layers, with the forward-mode
// derivative in their scalar input. Plain C++ (no Paddle types).
//
// A net G: R -> R^ng is a stack of DeePMD-kit layers y = tanh(x W + b) [* idt] (+ x when
// n_out == n_in, + [x, x] when n_out == 2 n_in). embed_net evaluates G(s) and G'(s) = dG/ds for
// many inputs s at once: the tangent rides along each layer (dy = (1 - t^2) (dx W) [* idt]
// (+ skip of dx)), so no activations are stored. The fused embedding kernels (embedding.h,
// embedding_train.h) build on these layers.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "activation.h"
#include "round_prec.h"
#include "simd.h"
#include "tanh_vec.h"

namespace dpp {

// One dense layer of an embedding net (DeePMD-kit conventions): y = tanh(x W + b) [* idt],
// plus x when n_out == n_in, or [x, x] when n_out == 2 n_in.
template <typename T>
struct EmbedLayer {
  const T* w;    // n_in x n_out
  const T* b;    // n_out
  const T* idt;  // n_out or nullptr
  int n_in, n_out;
  int round = kRoundNone;  // mixed precision: operands and results rounded (round_prec.h)
};

template <typename T>
using EmbedNet = std::vector<EmbedLayer<T>>;

// ---------------------------------------------------------------- register-blocked layers
// Activations are stored with a padded row length (a multiple of one vector, simd.h) and the
// weights are packed to match, so that the GEMM below runs on whole vectors in register blocks
// (gemm_bias: 3 rows x 2 column vectors a step on AVX2, 12 accumulators with the tangent rows).
template <typename T>
struct VecOf;  // (VecD, VecF: simd.h)
template <>
struct VecOf<double> { typedef VecD type; };
template <>
struct VecOf<float> { typedef VecF type; };
template <typename T>
using Vec = typename VecOf<T>::type;  // (an attribute on an alias template would be dropped)
template <typename T>
constexpr int kLanes = int(DPP_VEC_BYTES / sizeof(T));

inline int pad_to(int n, int lanes) { return (n + lanes - 1) / lanes * lanes; }

template <typename T>
struct PackedLayer {
  std::vector<T> w, b, idt;  // w: n_in x nop; b, idt: nop (zero padded)
  std::vector<T> b_post;     // with rounding: the bias, added after the product is rounded (b = 0)
  int n_in = 0, n_out = 0, nop = 0;
  bool has_idt = false;
  int round = kRoundNone;
};

// One layer packed: w(k, c) for k < n_in, c < n_out; b, idt may be null (0 and 1). With a
// rounding mode, W, b and idt are rounded here once, and b moves to b_post (DeePMD-kit adds the
// bias to the product in compute precision: two roundings).
template <typename T, typename W>
PackedLayer<T> pack_layer(int n_in, int n_out, W w, const T* b, const T* idt, int round = kRoundNone) {
  PackedLayer<T> P;
  P.n_in = n_in;
  P.n_out = n_out;
  P.nop = pad_to(n_out, kLanes<T>);
  P.round = round;
  P.w.assign(size_t(n_in) * P.nop, T(0));
  P.b.assign(P.nop, T(0));
  P.idt.assign(P.nop, T(1));
  for (int k = 0; k < n_in; ++k)
    for (int c = 0; c < n_out; ++c) P.w[size_t(k) * P.nop + c] = round_to(w(k, c), round);
  for (int c = 0; c < n_out; ++c) {
    if (b) P.b[c] = round_to(b[c], round);
    if (idt) P.idt[c] = round_to(idt[c], round);
  }
  if (round != kRoundNone) P.b_post.swap(P.b), P.b.assign(P.nop, T(0));
  P.has_idt = idt != nullptr;
  return P;
}

template <typename T>
std::vector<PackedLayer<T>> pack_net(const EmbedNet<T>& net) {
  std::vector<PackedLayer<T>> out;
  for (const auto& L : net)
    out.push_back(pack_layer<T>(L.n_in, L.n_out, [&](int k, int c) { return L.w[int64_t(k) * L.n_out + c]; }, L.b,
                                L.idt, L.round));
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
static_assert(sizeof(Vec<double>) == DPP_VEC_BYTES && sizeof(Vec<float>) == DPP_VEC_BYTES, "one register per vector");

// One block of the product: R rows x V column vectors (and the R tangent rows when Tangent),
// all accumulators in registers; the weight vectors of step k are loaded once and used R (2R)
// times. Each element is b + sum_k x_k w_k in k order (one FMA a step), whatever the blocking.
template <typename T, bool Tangent, int R, int V>
__attribute__((always_inline)) inline void gemm_block(const T* x0, const T* dx0, int ldx, int ni, const T* W,
                                                      int nop, const T* bias, T* z, T* zp) {
  constexpr int L = kLanes<T>;
  Vec<T> a[R][V], d[R][V];
  for (int v = 0; v < V; ++v) {
    const Vec<T> b = vload(bias + v * L);
    for (int i = 0; i < R; ++i) a[i][v] = b, d[i][v] = Vec<T>{};
  }
  for (int k = 0; k < ni; ++k) {
    Vec<T> w[V];
    for (int v = 0; v < V; ++v) w[v] = vload(W + int64_t(k) * nop + v * L);
    for (int i = 0; i < R; ++i) {
      const T xs = x0[i * ldx + k];
      for (int v = 0; v < V; ++v) a[i][v] += xs * w[v];
      if (Tangent) {
        const T ds = dx0[i * ldx + k];
        for (int v = 0; v < V; ++v) d[i][v] += ds * w[v];
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) {
      vstore(z + int64_t(i) * nop + v * L, a[i][v]);
      if (Tangent) vstore(zp + int64_t(i) * nop + v * L, d[i][v]);
    }
}

// Rows r0.. in blocks of R: V vectors of columns at a time, then single vectors.
template <typename T, bool Tangent, int R, int V>
inline void gemm_rows(const T* X, const T* DX, int ldx, int r0, const PackedLayer<T>& P, T* Z, T* ZP) {
  constexpr int L = kLanes<T>;
  const int ni = P.n_in, nop = P.nop, nv = nop / L;
  const T* W = P.w.data();
  const T* x0 = X + int64_t(r0) * ldx;
  const T* dx0 = Tangent ? DX + int64_t(r0) * ldx : nullptr;
  T* z = Z + int64_t(r0) * nop;
  T* zp = Tangent ? ZP + int64_t(r0) * nop : nullptr;
  int cv = 0;
  for (; cv + V <= nv; cv += V)
    gemm_block<T, Tangent, R, V>(x0, dx0, ldx, ni, W + cv * L, nop, P.b.data() + cv * L, z + cv * L,
                                 Tangent ? zp + cv * L : nullptr);
  for (; cv < nv; ++cv)
    gemm_block<T, Tangent, R, 1>(x0, dx0, ldx, ni, W + cv * L, nop, P.b.data() + cv * L, z + cv * L,
                                 Tangent ? zp + cv * L : nullptr);
}

// Z = B + X W (and ZP = DX W when Tangent): X, DX rows x ni with row stride ldx; Z, ZP rows x nop.
// Blocks of R rows x V vectors fill about 12 of AVX2's 16 registers with accumulators (3 x 2,
// x 2 with tangents; 6 x 2 without), the rest hold weights and broadcasts; 4 x 1 (8 with
// tangents) left the FMA unit waiting on loads: one weight and 8 broadcast loads per 8 FMAs.
template <typename T, bool Tangent>
void gemm_bias(const T* X, const T* DX, int ldx, int rows, const PackedLayer<T>& P, T* Z, T* ZP) {
  constexpr bool wide = kVecRegs >= 32;
  constexpr int R = Tangent ? (wide ? 4 : 3) : (wide ? 8 : 6), V = wide ? 3 : 2;
  int r = 0;
  for (; r + R <= rows; r += R) gemm_rows<T, Tangent, R, V>(X, DX, ldx, r, P, Z, ZP);
  for (; r < rows; ++r) gemm_rows<T, Tangent, 1, V>(X, DX, ldx, r, P, Z, ZP);
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

// The rest of a layer on one row in mixed precision, every step rounded as DeePMD-kit's
// compute-precision ops round: z = r(r(x W) + b), t = r(tanh z), y = r(t idt) when idt,
// y = r(y + skip). acc holds the accumulated x W (b was moved to b_post), dy the tangent dx W
// (when dy, updated in place); tanh z (before its rounding) goes to th; acc, y, th may alias.
// Derivatives are straight-through: those of the same ops with each rounding taken as the
// identity (tanh's from tanh z itself), as autograd gives through the twin (kernels/twins.py).
template <typename T, int M>
inline void round_epilogue_m(const PackedLayer<T>& P, const T* acc, T* y, T* th, T* dy, const T* x, const T* dx) {
  const int nop = P.nop, ni = P.n_in, no = P.n_out;
  const T* idt = P.idt.data();  // (1 without idt: rounding t * 1 leaves t)
  const T* b = P.b_post.data();
  // (padded columns: W, b are 0 there, so z = t = y = 0; the skip adds to real columns only)
  if (dy) {
#pragma omp simd
    for (int c = 0; c < nop; ++c) {
      const T z = round_v<T, M>(round_v<T, M>(acc[c]) + b[c]);
      const T tu = tanh_fast(z);
      dy[c] = (T(1) - tu * tu) * dy[c] * idt[c];
      th[c] = tu;
      y[c] = round_v<T, M>(round_v<T, M>(tu) * idt[c]);
    }
  } else {
#pragma omp simd
    for (int c = 0; c < nop; ++c) {
      const T z = round_v<T, M>(round_v<T, M>(acc[c]) + b[c]);
      const T tu = tanh_fast(z);
      th[c] = tu;
      y[c] = round_v<T, M>(round_v<T, M>(tu) * idt[c]);
    }
  }
  if (no == ni || no == 2 * ni) {
    for (int rep = 0; rep < no / ni; ++rep) {
      T* yr = y + rep * ni;
#pragma omp simd
      for (int c = 0; c < ni; ++c) yr[c] = round_v<T, M>(yr[c] + x[c]);
      if (dy) {
        T* dyr = dy + rep * ni;
#pragma omp simd
        for (int c = 0; c < ni; ++c) dyr[c] += dx[c];
      }
    }
  }
}

template <typename T>
inline void round_epilogue(const PackedLayer<T>& P, const T* acc, T* y, T* th, T* dy, const T* x, const T* dx) {
  switch (P.round) {  // (the mode is a template argument: the loops above vectorise)
    case kRoundBF16: round_epilogue_m<T, kRoundBF16>(P, acc, y, th, dy, x, dx); break;
    case kRoundF16: round_epilogue_m<T, kRoundF16>(P, acc, y, th, dy, x, dx); break;
    case kRoundF32: round_epilogue_m<T, kRoundF32>(P, acc, y, th, dy, x, dx); break;
    default: round_epilogue_m<T, kRoundNone>(P, acc, y, th, dy, x, dx); break;
  }
}

// One row of a layer's epilogue on whole vectors (nop a multiple of the lanes): t = tanh z,
// y = idt t, dy = idt (1 - t^2) zp. z may alias y, zp dy.
template <typename T, bool Tangent>
__attribute__((always_inline)) inline void tanh_epilogue(int nop, const T* z, T* y, const T* zp, T* dy,
                                                         const T* idt) {
  constexpr int L = kLanes<T>;
  if (!idt) {  // (no idt: the values of idt = 1, two products fewer)
    for (int c = 0; c < nop; c += L) {
      const Vec<T> t = tanh_vec(vload(z + c));
      if (Tangent) vstore(dy + c, (T(1) - t * t) * vload(zp + c));
      vstore(y + c, t);
    }
    return;
  }
  for (int c = 0; c < nop; c += L) {
    const Vec<T> t = tanh_vec(vload(z + c)), id = vload(idt + c);
    if (Tangent) vstore(dy + c, id * (T(1) - t * t) * vload(zp + c));
    vstore(y + c, id * t);
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
    if (P.round != kRoundNone) {
      round_epilogue(P, yr, yr, yr, dyr, x + int64_t(r) * ldx, Tangent ? dx + int64_t(r) * ldx : nullptr);
      continue;
    }
    if (std::is_same<T, float>::value && kTanhVecF) {  // whole vectors: tanh_vec.h's division-free tanh
      tanh_epilogue<T, Tangent>(nop, yr, yr, dyr, dyr, P.has_idt ? idt : nullptr);
    } else {
#pragma omp simd
      for (int c = 0; c < nop; ++c) {
        const T t = tanh_fast(yr[c]);
        if (Tangent) dyr[c] = (T(1) - t * t) * dyr[c] * idt[c];
        yr[c] = t * idt[c];
      }
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
  const int m = net.empty() ? kRoundNone : net[0].round;  // the input is rounded too
  for (int r = 0; r < rows; ++r) {
    a[r] = round_to(s[int64_t(r) * s_stride], m);
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

}  // namespace dpp
