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

// Rows x of one layer -> y (and, with tangents, dx -> dy). Buffers are rows x width.
template <typename T>
void embed_layer(const EmbedLayer<T>& L, int rows, const T* x, const T* dx, T* y, T* dy) {
  const int ni = L.n_in, no = L.n_out;
  for (int r = 0; r < rows; ++r) {
    T* yr = y + int64_t(r) * no;
    T* dyr = dy ? dy + int64_t(r) * no : nullptr;
    const T* xr = x + int64_t(r) * ni;
#pragma omp simd
    for (int c = 0; c < no; ++c) yr[c] = L.b[c];
    if (dyr) {
      const T* dxr = dx + int64_t(r) * ni;
#pragma omp simd
      for (int c = 0; c < no; ++c) dyr[c] = T(0);
      for (int k = 0; k < ni; ++k) {
        const T a = xr[k], da = dxr[k];
        const T* wk = L.w + int64_t(k) * no;
#pragma omp simd
        for (int c = 0; c < no; ++c) {
          yr[c] += a * wk[c];
          dyr[c] += da * wk[c];
        }
      }
    } else {
      for (int k = 0; k < ni; ++k) {
        const T a = xr[k];
        const T* wk = L.w + int64_t(k) * no;
#pragma omp simd
        for (int c = 0; c < no; ++c) yr[c] += a * wk[c];
      }
    }
    // activation, timestep and residual
#pragma omp simd
    for (int c = 0; c < no; ++c) {
      const T t = tanh_fast(yr[c]);
      const T s = L.idt ? L.idt[c] : T(1);
      if (dyr) dyr[c] = (T(1) - t * t) * dyr[c] * s;
      yr[c] = t * s;
    }
    if (no == ni || no == 2 * ni) {
      for (int c = 0; c < no; ++c) {
        yr[c] += xr[c % ni];
        if (dyr) dyr[c] += dx[int64_t(r) * ni + c % ni];
      }
    }
  }
}

// G (and G' = dG/ds when dg != nullptr) for `rows` scalar inputs s (stride `s_stride`).
// work: 4 buffers of rows x max width each.
template <typename T>
void embed_net(const EmbedNet<T>& net, int rows, const T* s, int s_stride, T* g, T* dg, T* work, int64_t wsize) {
  T* a = work;
  T* da = work + wsize;
  T* b = work + 2 * wsize;
  T* db = work + 3 * wsize;
  for (int r = 0; r < rows; ++r) {
    a[r] = s[int64_t(r) * s_stride];
    da[r] = T(1);
  }
  const int nl = int(net.size());
  for (int l = 0; l < nl; ++l) {
    const bool last = l == nl - 1;
    T* out = last ? g : b;
    T* dout = last ? dg : (dg ? db : nullptr);
    embed_layer(net[l], rows, a, dg ? da : nullptr, out, dout);
    if (!last) {
      std::swap(a, b);
      std::swap(da, db);
    }
  }
}

inline int embed_max_width(const std::vector<int>& widths) {
  int m = 1;
  for (int w : widths) m = w > m ? w : m;
  return m;
}

// env: nat x nnei x 4; nets[t] for neighbour type t with sel[t] slots; T: nat x ng x 4.
template <typename T>
void se_a_embed_forward(const T* env, int64_t nat, const std::vector<int>& sel, const std::vector<EmbedNet<T>>& nets,
                        int ng, int width, T* out) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  const T scale = T(1) / T(nnei);
#pragma omp parallel
  {
    int maxsel = 0;
    for (int s : sel) maxsel = s > maxsel ? s : maxsel;
    const int64_t wsize = int64_t(maxsel) * width;
    std::vector<T> work(4 * wsize), g(int64_t(maxsel) * ng);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      T* ti = out + i * ng * 4;
      for (int k = 0; k < ng * 4; ++k) ti[k] = T(0);
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        embed_net(nets[t], sel[t], e, 4, g.data(), (T*)nullptr, work.data(), wsize);
        for (int j = 0; j < sel[t]; ++j) {
          const T* gj = g.data() + int64_t(j) * ng;
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
  int nnei = 0;
  for (int s : sel) nnei += s;
  const T scale = T(1) / T(nnei);
#pragma omp parallel
  {
    int maxsel = 0;
    for (int s : sel) maxsel = s > maxsel ? s : maxsel;
    const int64_t wsize = int64_t(maxsel) * width;
    std::vector<T> work(4 * wsize), g(int64_t(maxsel) * ng), dg(int64_t(maxsel) * ng);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nat; ++i) {
      const T* gti = gT + i * ng * 4;
      int off = 0;
      for (std::size_t t = 0; t < sel.size(); ++t) {
        const T* e = env + (i * nnei + off) * 4;
        T* ge = genv + (i * nnei + off) * 4;
        embed_net(nets[t], sel[t], e, 4, g.data(), dg.data(), work.data(), wsize);
        for (int j = 0; j < sel[t]; ++j) {
          const T* gj = g.data() + int64_t(j) * ng;
          const T* dgj = dg.data() + int64_t(j) * ng;
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

}  // namespace dpp
