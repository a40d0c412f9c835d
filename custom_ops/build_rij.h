// r_ij of a block of centre atoms from a neighbour list, and its transpose (a scatter).
// Plain C++ (no Paddle types).
//
//   rij[f, c, k] = coord[f, j] + shift[f, c, k] - coord[f, centre[c]],  j = max(nlist[f, c, k], 0)
//
// Shapes: coord [nf, nall, 3], nlist [nf, nc, nnei] (-1 padded, else < nall), shift and rij
// [nf, nc, nnei, 3], centre [nc] (indices into nall). The numbers of model/env_mat.py build_rij
// (centre = 0..nloc-1) in one pass: Paddle's broadcasting subtract on these shapes costs several
// ns per element. A padded slot gives shift - coord[centre] + coord[0] (its value is unused).
#pragma once

#include <cstdint>

namespace dpp {

template <typename T>
void build_rij(const T* coord, const int32_t* nlist, const T* shift, const int64_t* centre, T* rij, int64_t nf,
               int64_t nall, int64_t nc, int64_t nnei) {
#pragma omp parallel for schedule(static)
  for (int64_t a = 0; a < nf * nc; ++a) {
    const T* xf = coord + (a / nc) * nall * 3;  // the frame's first atom
    const T* xi = xf + centre[a % nc] * 3;
    for (int64_t k = 0; k < nnei; ++k) {
      const int64_t s = a * nnei + k;
      const T* xj = xf + int64_t(nlist[s] > 0 ? nlist[s] : 0) * 3;
      for (int d = 0; d < 3; ++d) rij[s * 3 + d] = xj[d] + shift[s * 3 + d] - xi[d];
    }
  }
}

// The gradient in coord for a cotangent grad_rij (serial scatter):
//   g_coord[f, j] += grad_rij[f, c, k],  g_coord[f, centre[c]] -= grad_rij[f, c, k]
// g_coord [nf, nall, 3] is overwritten.
template <typename T>
void build_rij_backward(const int32_t* nlist, const int64_t* centre, const T* grad_rij, T* g_coord, int64_t nf,
                        int64_t nall, int64_t nc, int64_t nnei) {
  for (int64_t k = 0; k < nf * nall * 3; ++k) g_coord[k] = T(0);
  for (int64_t a = 0; a < nf * nc; ++a) {
    T* of = g_coord + (a / nc) * nall * 3;
    T* oi = of + centre[a % nc] * 3;
    for (int64_t k = 0; k < nnei; ++k) {
      const int64_t s = a * nnei + k;
      T* oj = of + int64_t(nlist[s] > 0 ? nlist[s] : 0) * 3;
      for (int d = 0; d < 3; ++d) {
        oj[d] += grad_rij[s * 3 + d];
        oi[d] -= grad_rij[s * 3 + d];
      }
    }
  }
}

}  // namespace dpp
