// Force, virial and atom virial from g_ij = dE/dr_ij of a block of centre atoms (the whole
// frame when centre = 0..nloc-1). Plain C++ (no Paddle types).
//
//   force[f, centre[i]]     += sum_j g_ij,        force[f, j] -= g_ij
//   virial[f, a*3+b]         = -sum_ij g_ij[a] r_ij[b]
//   atom_virial[f, j, a*3+b] += -g_ij[a] r_ij[b]   (each pair on its neighbour j, as DeePMD-kit)
//
// Shapes: g and rij [nf, nc, nnei, 3], nlist [nf, nc, nnei] (-1 padded, else < nall), centre
// [nc] (< nall); force [nf, nall, 3], virial [nf, 9], atom_virial [nf, nall, 9], overwritten.
// One serial pass (the scatter it replaces, Paddle's index_add, took ~15% of a compressed
// model's call).
#pragma once

#include <algorithm>
#include <cstdint>

namespace dpp {

template <typename T>
void prod_force_virial(const T* g, const T* rij, const int32_t* nlist, const int64_t* centre, int64_t nf,
                       int64_t nc, int64_t nnei, int64_t nall, T* force, T* virial, T* atom_virial) {
  std::fill(force, force + nf * nall * 3, T(0));
  std::fill(virial, virial + nf * 9, T(0));
  std::fill(atom_virial, atom_virial + nf * nall * 9, T(0));
  for (int64_t f = 0; f < nf; ++f) {
    T* fo = force + f * nall * 3;
    T* vi = virial + f * 9;
    T* a9 = atom_virial + f * nall * 9;
    T v[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < nc; ++i) {
      const int64_t row = (f * nc + i) * nnei;
      T* fc = fo + centre[i] * 3;
      for (int64_t s = 0; s < nnei; ++s) {
        const int32_t j = nlist[row + s];
        if (j < 0) continue;
        const T* gg = g + (row + s) * 3;
        const T* r = rij + (row + s) * 3;
        T* fj = fo + int64_t(j) * 3;
        T* aj = a9 + int64_t(j) * 9;
        for (int a = 0; a < 3; ++a) {
          fc[a] += gg[a];
          fj[a] -= gg[a];
          for (int b = 0; b < 3; ++b) {
            const T p = gg[a] * r[b];
            v[a * 3 + b] -= p;
            aj[a * 3 + b] -= p;
          }
        }
      }
    }
    for (int k = 0; k < 9; ++k) vi[k] = v[k];
  }
}

}  // namespace dpp
