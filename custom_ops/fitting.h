// The energy fitting net of a training step in one operator: E = N(x) per row, dE/dx, and the
// gradient of  Phi = sum_r Ebar_r E_r + <xdot_r, dE_r/dx_r>  (what a loss on energies and forces
// asks of the net: xdot is the cotangent that reaches dE/dx). Plain C++: the elementwise passes;
// the GEMMs are the binding's (fitting_op.cc).
//
// Hidden layer l (tanh, DeePMD-kit's fitting layers):  z = x W + b,  t = tanh(z),
//   x' = idt t + res(x),  res(x) = x (no == ni), [x, x] (no == 2 ni), 0 otherwise; idt optional.
// Output layer: E = x_L W_o + b_o (one column).
// dE/dx by the reverse sweep with seed 1:  ybar_L = W_o^T,  zbar = ybar idt (1 - t^2),
//   xbar = zbar W^T + res^T(ybar)  (res^T: ybar, or the sum of its two halves).
// The gradient of Phi: tangent sweep  zdot = xdot W,  tdot = (1 - t^2) zdot,  xdot' = idt tdot +
// res(xdot); then reverse over both sweeps, with the adjoint of the tangent sweep equal to the
// forward's ybar (same linear recursion, same seed):
//   tq = ybar idt,  tp = p idt - 2 t zdot tq,  zp = tp (1 - t^2),  zq = tq (1 - t^2),
//   Wbar = x^T zp + xdot^T zq,  bbar = sum_r zp,  idtbar = sum_r (p t + ybar tdot),
//   p' = zp W^T + res^T(p);  at the top p = Ebar W_o^T,  Wbar_o = x_L^T Ebar + xdot_L^T 1.
#pragma once
#include <cstdint>

#include "embed_net.h"  // (add_skip, add_skip_transposed)

namespace dpp {

// x' = idt t + res(x) over n rows (x: n x ni, t and x': n x no); res: embed_net.h's add_skip
template <typename T>
void fit_layer_out(const T* t, const T* idt, const T* x, T* xn, int64_t n, int ni, int no) {
  const bool skip = no == ni || no == 2 * ni;
  for (int64_t r = 0; r < n; ++r) {
    const T* tr = t + r * no;
    T* yr = xn + r * no;
    if (idt) {
#pragma omp simd
      for (int c = 0; c < no; ++c) yr[c] = tr[c] * idt[c];
    } else {
      for (int c = 0; c < no; ++c) yr[c] = tr[c];
    }
    if (skip) add_skip(yr, x + r * ni, ni, no);
  }
}

// zbar = ybar idt (1 - t^2)
template <typename T>
void fit_zbar(const T* ybar, const T* t, const T* idt, T* zbar, int64_t n, int no) {
  for (int64_t r = 0; r < n; ++r) {
    const T* yr = ybar + r * no;
    const T* tr = t + r * no;
    T* zr = zbar + r * no;
#pragma omp simd
    for (int c = 0; c < no; ++c) zr[c] = (idt ? yr[c] * idt[c] : yr[c]) * (T(1) - tr[c] * tr[c]);
  }
}

// xbar += res^T(ybar): the skip connection's share of the input's adjoint (add_skip_transposed)
template <typename T>
void fit_add_res_t(const T* ybar, T* xbar, int64_t n, int ni, int no) {
  if (no != ni && no != 2 * ni) return;
  for (int64_t r = 0; r < n; ++r) add_skip_transposed(xbar + r * ni, ybar + r * no, ni, no);
}

// tangent: tdot = (1 - t^2) zdot, xdot' = idt tdot + res(xdot)
template <typename T>
void fit_tangent(const T* t, const T* zdot, const T* idt, const T* xdot, T* tdot, T* xdotn, int64_t n, int ni,
                 int no) {
  for (int64_t r = 0; r < n; ++r) {
    const T* tr = t + r * no;
    const T* zr = zdot + r * no;
    T* dr = tdot + r * no;
#pragma omp simd
    for (int c = 0; c < no; ++c) dr[c] = (T(1) - tr[c] * tr[c]) * zr[c];
  }
  fit_layer_out(tdot, idt, xdot, xdotn, n, ni, no);
}

// One hidden layer of the reverse sweep over both passes: zp (n x no) and zq (n x no) for the
// weight GEMM, bbar and idtbar accumulated (set, not added).
template <typename T>
void fit_reverse_elementwise(const T* p, const T* ybar, const T* t, const T* zdot, const T* tdot, const T* idt,
                             T* zp, T* zq, T* bbar, T* idtbar, int64_t n, int no) {
  for (int c = 0; c < no; ++c) bbar[c] = T(0);
  if (idtbar)
    for (int c = 0; c < no; ++c) idtbar[c] = T(0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t o = r * no;
#pragma omp simd
    for (int c = 0; c < no; ++c) {
      const T tt = t[o + c], om = T(1) - tt * tt;
      const T tq = idt ? ybar[o + c] * idt[c] : ybar[o + c];
      const T tp = (idt ? p[o + c] * idt[c] : p[o + c]) - T(2) * tt * zdot[o + c] * tq;
      zp[o + c] = tp * om;
      zq[o + c] = tq * om;
      bbar[c] += tp * om;
    }
    if (idtbar) {
#pragma omp simd
      for (int c = 0; c < no; ++c) idtbar[c] += p[o + c] * t[o + c] + ybar[o + c] * tdot[o + c];
    }
  }
}

}  // namespace dpp
