// Reverse-mode sweep through an embedding net (embed_net.h) for the weight gradients of the
// training kernels (embedding_train.h). Plain C++ (no Paddle types).
//
// The sweep runs over a forward-mode (value + s-tangent) pass of the net, which keeps per layer
// its input x, tangent dx, tanh output t and the tangent pre-activation zp = dx W. For one layer
// y = idt * tanh(x W + b) (+ skip), with cotangents yb on y and dyb on dy:
//       zbp = idt dyb (1 - t^2),   zb = (idt yb - 2 idt dyb zp t) (1 - t^2)
//       Wbar += x^T zb + dx^T zbp,  bbar += sum zb,  idtbar += sum (yb t + dyb (1 - t^2) zp)
//       xb = zb W^T (+ skip of yb),  dxb = zbp W^T (+ skip of dyb).
// Every product runs on the register-blocked kernels of embed_net.h (weights packed to whole
// 64-byte vectors, W^T packed too); buffers are per thread and O(sel x width).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "embed_net.h"

namespace dpp {

// W^T of a layer packed for gemm_bias: n_in = n_out(W), columns = n_in(W) padded, bias 0.
template <typename T>
PackedLayer<T> pack_transposed(const EmbedLayer<T>& L) {
  PackedLayer<T> P = pack_layer<T>(L.n_out, L.n_in, [&](int k, int c) { return L.w[int64_t(c) * L.n_out + k]; },
                                   nullptr, nullptr, L.round);
  P.round = kRoundNone;  // (the transposed product carries cotangents: rounded W, exact sums)
  return P;
}

// GW (ni x ldz) += X^T Z (+ DX^T ZP when Tangent): X, DX rows x ni (stride ldx), Z, ZP rows x ldz.
// Blocks of 4 inputs x 2 column vectors: 8 accumulators, each loaded vector used 4 times.
template <typename T, bool Tangent>
void weight_grad(const T* X, const T* DX, int ldx, const T* Z, const T* ZP, int ldz, int rows, int ni, T* GW) {
  constexpr int L = kLanes<T>;
  const int nv = ldz / L;
  int k = 0;
  for (; k + 4 <= ni; k += 4) {
    int cv = 0;
    for (; cv + 2 <= nv; cv += 2) {
      T* g = GW + int64_t(k) * ldz + cv * L;
      Vec<T> a0 = vload(g), a1 = vload(g + ldz), a2 = vload(g + 2 * ldz), a3 = vload(g + 3 * ldz);
      Vec<T> b0 = vload(g + L), b1 = vload(g + ldz + L), b2 = vload(g + 2 * ldz + L), b3 = vload(g + 3 * ldz + L);
      for (int r = 0; r < rows; ++r) {
        const T* x = X + int64_t(r) * ldx + k;
        const Vec<T> z = vload(Z + int64_t(r) * ldz + cv * L), y = vload(Z + int64_t(r) * ldz + cv * L + L);
        a0 += x[0] * z; a1 += x[1] * z; a2 += x[2] * z; a3 += x[3] * z;
        b0 += x[0] * y; b1 += x[1] * y; b2 += x[2] * y; b3 += x[3] * y;
        if (Tangent) {
          const T* dx = DX + int64_t(r) * ldx + k;
          const Vec<T> zp = vload(ZP + int64_t(r) * ldz + cv * L), yp = vload(ZP + int64_t(r) * ldz + cv * L + L);
          a0 += dx[0] * zp; a1 += dx[1] * zp; a2 += dx[2] * zp; a3 += dx[3] * zp;
          b0 += dx[0] * yp; b1 += dx[1] * yp; b2 += dx[2] * yp; b3 += dx[3] * yp;
        }
      }
      vstore(g, a0); vstore(g + ldz, a1); vstore(g + 2 * ldz, a2); vstore(g + 3 * ldz, a3);
      vstore(g + L, b0); vstore(g + ldz + L, b1); vstore(g + 2 * ldz + L, b2); vstore(g + 3 * ldz + L, b3);
    }
    for (; cv < nv; ++cv) {
      T* g = GW + int64_t(k) * ldz + cv * L;
      Vec<T> a0 = vload(g), a1 = vload(g + ldz), a2 = vload(g + 2 * ldz), a3 = vload(g + 3 * ldz);
      for (int r = 0; r < rows; ++r) {
        const T* x = X + int64_t(r) * ldx + k;
        const Vec<T> z = vload(Z + int64_t(r) * ldz + cv * L);
        a0 += x[0] * z; a1 += x[1] * z; a2 += x[2] * z; a3 += x[3] * z;
        if (Tangent) {
          const T* dx = DX + int64_t(r) * ldx + k;
          const Vec<T> zp = vload(ZP + int64_t(r) * ldz + cv * L);
          a0 += dx[0] * zp; a1 += dx[1] * zp; a2 += dx[2] * zp; a3 += dx[3] * zp;
        }
      }
      vstore(g, a0); vstore(g + ldz, a1); vstore(g + 2 * ldz, a2); vstore(g + 3 * ldz, a3);
    }
  }
  // the last ni % 4 inputs (all of a 1 -> n first layer): one input, up to 4 column vectors,
  // the tangent's products in accumulators of their own (8 independent sums, not one chain)
  for (; k < ni; ++k) {
    for (int cv = 0; cv < nv; cv += 4) {
      const int nc = std::min(4, nv - cv);
      T* g = GW + int64_t(k) * ldz + cv * L;
      Vec<T> a[4], ap[4];
      for (int q = 0; q < 4; ++q) a[q] = ap[q] = Vec<T>{};
      for (int r = 0; r < rows; ++r) {
        const T x = X[int64_t(r) * ldx + k];
        const T* z = Z + int64_t(r) * ldz + cv * L;
        for (int q = 0; q < nc; ++q) a[q] += x * vload(z + q * L);
        if (Tangent) {
          const T dx = DX[int64_t(r) * ldx + k];
          const T* zp = ZP + int64_t(r) * ldz + cv * L;
          for (int q = 0; q < nc; ++q) ap[q] += dx * vload(zp + q * L);
        }
      }
      for (int q = 0; q < nc; ++q) vstore(g + q * L, vload(g + q * L) + (a[q] + ap[q]));
    }
  }
}

// A net packed both ways, and the per-thread buffers of one forward-mode pass and its reverse.
template <typename T>
struct TrainNet {
  std::vector<PackedLayer<T>> fwd, bwd;  // W and W^T
  int ldg = 0;                           // padded width of the output G
  explicit TrainNet(const EmbedNet<T>& net) : fwd(pack_net(net)) {
    for (const auto& L : net) bwd.push_back(pack_transposed(L));
    ldg = fwd.back().nop;
  }
  int ld_in(size_t l) const { return l == 0 ? 1 : fwd[l - 1].nop; }
};

template <typename T>
struct TrainTape {
  std::vector<std::vector<T>> a, da, t, zp;  // a[l], da[l]: input of layer l (a[nl] = G); t, zp: layer outputs
  std::vector<T> yb, dyb, xb, dxb, zb, zbp;  // reverse-sweep cotangents, rows x widest padded layer
  TrainTape(const TrainNet<T>& net, int rows) {
    const size_t nl = net.fwd.size();
    a.resize(nl + 1); da.resize(nl + 1); t.resize(nl); zp.resize(nl);
    int width = 1;
    for (size_t l = 0; l <= nl; ++l) {
      const int ld = l < nl ? net.ld_in(l) : net.ldg;
      a[l].assign(size_t(rows) * ld, T(0));
      da[l].assign(size_t(rows) * ld, T(0));
      if (l < nl) {
        t[l].assign(size_t(rows) * net.fwd[l].nop, T(0));
        zp[l].assign(size_t(rows) * net.fwd[l].nop, T(0));
        width = std::max(width, net.fwd[l].nop);
      }
    }
    for (auto* v : {&yb, &dyb, &xb, &dxb, &zb, &zbp}) v->assign(size_t(rows) * width, T(0));
  }
};

// Per-thread parameter-gradient accumulators in the packed layout: per layer W (n_in x nop), b, idt.
template <typename T>
struct NetGrads {
  std::vector<std::vector<T>> w, b, idt;
  explicit NetGrads(const TrainNet<T>& net) {
    for (const auto& P : net.fwd) {
      w.emplace_back(size_t(P.n_in) * P.nop, T(0));
      b.emplace_back(P.nop, T(0));
      idt.emplace_back(P.nop, T(0));
    }
  }
  void zero() {
    for (auto* v : {&w, &b, &idt})
      for (auto& x : *v) std::fill(x.begin(), x.end(), T(0));
  }
  // add into the flat, unpadded layout (W, b, idt when the layer has it), returns the next offset
  int64_t add_to(const TrainNet<T>& net, T* flat) const {
    int64_t off = 0;
    for (size_t l = 0; l < net.fwd.size(); ++l) {
      const auto& P = net.fwd[l];
      for (int k = 0; k < P.n_in; ++k)
        for (int c = 0; c < P.n_out; ++c) flat[off + int64_t(k) * P.n_out + c] += w[l][size_t(k) * P.nop + c];
      off += int64_t(P.n_in) * P.n_out;
      for (int c = 0; c < P.n_out; ++c) flat[off + c] += b[l][c];
      off += P.n_out;
      if (P.has_idt) {
        for (int c = 0; c < P.n_out; ++c) flat[off + c] += idt[l][c];
        off += P.n_out;
      }
    }
    return off;
  }
};

// A layer's outputs from its tanh values t and tangent pre-activations zp, rows x nop:
// y = idt t (+ skip of x), dy = idt (1 - t^2) zp (+ skip of dx). train_forward and load_tape both
// use it, so that outputs recomputed from a slim tape equal the recorded ones bit for bit.
template <typename T>
void layer_outputs(const PackedLayer<T>& P, int rows, const T* th, const T* zp, const T* x, const T* dx, int ldx,
                   T* y, T* dy) {
  const int nop = P.nop, ni = P.n_in, no = P.n_out;
  const T* idt = P.idt.data();
  const bool skip = no == ni || no == 2 * ni;
  for (int r = 0; r < rows; ++r) {
    const T* t = th + int64_t(r) * nop;
    const T* z = zp + int64_t(r) * nop;
    T* yr = y + int64_t(r) * nop;
    T* dyr = dy + int64_t(r) * nop;
    if (P.has_idt) {
#pragma omp simd
      for (int c = 0; c < nop; ++c) {
        yr[c] = idt[c] * t[c];
        dyr[c] = idt[c] * (T(1) - t[c] * t[c]) * z[c];
      }
    } else {
#pragma omp simd
      for (int c = 0; c < nop; ++c) {
        yr[c] = t[c];
        dyr[c] = (T(1) - t[c] * t[c]) * z[c];
      }
    }
    if (skip) {
      add_skip(yr, x + int64_t(r) * ldx, ni, no);
      add_skip(dyr, dx + int64_t(r) * ldx, ni, no);
    }
  }
}

// The tape of one row kept between two training passes (se_a_embed_tape -> se_a_embed_pgrad):
// per layer l, t[l] and zp[l] (tanh values and tangent pre-activations), each fwd[l].nop wide;
// load_tape recomputes the layers' outputs a[l+1], da[l+1] (G, G' for the last) from them with
// train_forward's own arithmetic. Nets with rounded layers (mixed precision) keep a[l+1] and
// da[l+1] on the tape too (4 arrays a layer). a[0] = s and da[0] = 1 are not stored.
template <typename T>
bool tape_slim(const EmbedNet<T>& net) {
  for (const auto& L : net)
    if (L.round != kRoundNone) return false;
  return true;
}

template <typename T>
int tape_width(const EmbedNet<T>& net) {
  int w = 0;
  for (const auto& L : net) w += (tape_slim(net) ? 2 : 4) * pad_to(L.n_out, kLanes<T>);
  return w;
}

template <typename T>
bool tape_slim(const TrainNet<T>& net) {
  for (const auto& P : net.fwd)
    if (P.round != kRoundNone) return false;
  return true;
}

template <typename T>
void store_tape(const TrainNet<T>& net, const TrainTape<T>& tp, int rows, T* out, int64_t ld) {
  const bool slim = tape_slim(net);
  for (int r = 0; r < rows; ++r) {
    T* o = out + r * ld;
    for (size_t l = 0; l < net.fwd.size(); ++l) {
      const int w = net.fwd[l].nop;
      if (!slim)
        for (const auto* v : {&tp.a[l + 1], &tp.da[l + 1]}) o = std::copy_n(v->data() + size_t(r) * w, w, o);
      for (const auto* v : {&tp.t[l], &tp.zp[l]}) o = std::copy_n(v->data() + size_t(r) * w, w, o);
    }
  }
}

// The tape of `rows` inputs s (stride 4) read back: what train_forward would record.
template <typename T>
void load_tape(const TrainNet<T>& net, TrainTape<T>& tp, int rows, const T* s, const T* in, int64_t ld) {
  const int m = net.fwd.empty() ? kRoundNone : net.fwd[0].round;
  for (int r = 0; r < rows; ++r) {
    tp.a[0][r] = round_to(s[int64_t(r) * 4], m);
    tp.da[0][r] = T(1);
  }
  const bool slim = tape_slim(net);
  for (int r = 0; r < rows; ++r) {  // (row by row: the tape is read once, in order)
    const T* o = in + r * ld;
    for (size_t l = 0; l < net.fwd.size(); ++l) {
      const int w = net.fwd[l].nop;
      if (!slim)
        for (auto* v : {&tp.a[l + 1], &tp.da[l + 1]}) {
          std::copy_n(o, w, v->data() + size_t(r) * w);
          o += w;
        }
      for (auto* v : {&tp.t[l], &tp.zp[l]}) {
        std::copy_n(o, w, v->data() + size_t(r) * w);
        o += w;
      }
    }
  }
  if (slim)
    for (size_t l = 0; l < net.fwd.size(); ++l)
      layer_outputs(net.fwd[l], rows, tp.t[l].data(), tp.zp[l].data(), tp.a[l].data(), tp.da[l].data(), net.ld_in(l),
                    tp.a[l + 1].data(), tp.da[l + 1].data());
}

// forward-mode pass over `rows` inputs s (stride 4), recording the tape; G = a[nl], G' = da[nl]
template <typename T>
void train_forward(const TrainNet<T>& net, int rows, const T* s, TrainTape<T>& tp) {
  const int m = net.fwd.empty() ? kRoundNone : net.fwd[0].round;  // the input is rounded too
  for (int r = 0; r < rows; ++r) {
    tp.a[0][r] = round_to(s[int64_t(r) * 4], m);
    tp.da[0][r] = T(1);
  }
  for (size_t l = 0; l < net.fwd.size(); ++l) {
    const auto& P = net.fwd[l];
    const int ldx = net.ld_in(l), nop = P.nop, ni = P.n_in, no = P.n_out;
    T* th = tp.t[l].data();
    T* zp = tp.zp[l].data();
    gemm_bias<T, true>(tp.a[l].data(), tp.da[l].data(), ldx, rows, P, th, zp);
    if (P.round != kRoundNone) {  // mixed precision (embed_net.h); the tape keeps tanh z before rounding
      for (int r = 0; r < rows; ++r) {
        T* tr = th + int64_t(r) * nop;
        T* dy = tp.da[l + 1].data() + int64_t(r) * nop;
        std::copy(zp + int64_t(r) * nop, zp + int64_t(r + 1) * nop, dy);
        round_epilogue(P, tr, tp.a[l + 1].data() + int64_t(r) * nop, tr, dy, tp.a[l].data() + int64_t(r) * ldx,
                       tp.da[l].data() + int64_t(r) * ldx);
      }
      continue;
    }
    const int64_t n = int64_t(rows) * nop;
    if (std::is_same<T, float>::value && kTanhVecF) {
      tanh_row<T, Vec<T>>(th, th, n);  // whole vectors: tanh_vec.h's division-free tanh
    } else {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) th[c] = tanh_fast(th[c]);
    }
    layer_outputs(P, rows, th, zp, tp.a[l].data(), tp.da[l].data(), ldx, tp.a[l + 1].data(), tp.da[l + 1].data());
  }
}

// The element-wise part of the reverse sweep through layer l for all rows: zb, zbp and the bias
// and idt gradients. M: the layer's rounding mode (round_prec.h); idt multiplies the rounded tanh.
template <typename T, bool Tangent, int M>
void reverse_rows(const PackedLayer<T>& P, int rows, TrainTape<T>& tp, size_t l, T* gb, T* gidt) {
  const int nop = P.nop;
  const T* idt = P.idt.data();
  for (int r = 0; r < rows; ++r) {
    const T* t = tp.t[l].data() + int64_t(r) * nop;
    const T* zp = tp.zp[l].data() + int64_t(r) * nop;
    const T* yb = tp.yb.data() + int64_t(r) * nop;
    const T* dyb = tp.dyb.data() + int64_t(r) * nop;
    T* zb = tp.zb.data() + int64_t(r) * nop;
    T* zbp = tp.zbp.data() + int64_t(r) * nop;
#pragma omp simd
    for (int c = 0; c < nop; ++c) {
      const T q = T(1) - t[c] * t[c];
      T tb = idt[c] * yb[c];
      T gi = yb[c] * round_v<T, M>(t[c]);  // d/didt of idt r(tanh z)
      if (Tangent) {
        zbp[c] = idt[c] * dyb[c] * q;
        tb -= T(2) * idt[c] * dyb[c] * zp[c] * t[c];
        gi += dyb[c] * q * zp[c];
      }
      zb[c] = tb * q;
      gb[c] += zb[c];
      gidt[c] += gi;
    }
  }
}

// Reverse sweep from cotangents on G (tp.yb) and, when Tangent, on G' (tp.dyb), both rows x ldg;
// accumulates the weight gradients into g.
template <typename T, bool Tangent>
void train_reverse(const TrainNet<T>& net, int rows, TrainTape<T>& tp, NetGrads<T>& g) {
  const int nl = int(net.fwd.size());
  for (int l = nl - 1; l >= 0; --l) {
    const auto& P = net.fwd[l];
    const int nop = P.nop, ni = P.n_in, no = P.n_out, ldx = net.ld_in(l);
    T* gb = g.b[l].data();
    T* gidt = g.idt[l].data();
    switch (P.round) {  // (the mode a template argument: the loop vectorises)
      case kRoundBF16: reverse_rows<T, Tangent, kRoundBF16>(P, rows, tp, l, gb, gidt); break;
      case kRoundF16: reverse_rows<T, Tangent, kRoundF16>(P, rows, tp, l, gb, gidt); break;
      case kRoundF32: reverse_rows<T, Tangent, kRoundF32>(P, rows, tp, l, gb, gidt); break;
      default: reverse_rows<T, Tangent, kRoundNone>(P, rows, tp, l, gb, gidt); break;
    }
    weight_grad<T, Tangent>(tp.a[l].data(), tp.da[l].data(), ldx, tp.zb.data(), tp.zbp.data(), nop, rows, ni,
                            g.w[l].data());
    if (l == 0) break;
    // cotangents of this layer's input: xb = zb W^T (+ skip), dxb = zbp W^T (+ skip)
    gemm_bias<T, Tangent>(tp.zb.data(), tp.zbp.data(), nop, rows, net.bwd[l], tp.xb.data(), tp.dxb.data());
    if (no == ni || no == 2 * ni) {
      for (int r = 0; r < rows; ++r) {
        add_skip_transposed(tp.xb.data() + int64_t(r) * ldx, tp.yb.data() + int64_t(r) * nop, ni, no);
        if (Tangent)
          add_skip_transposed(tp.dxb.data() + int64_t(r) * ldx, tp.dyb.data() + int64_t(r) * nop, ni, no);
      }
    }
    std::swap(tp.yb, tp.xb);
    std::swap(tp.dyb, tp.dxb);
  }
}

}  // namespace dpp
