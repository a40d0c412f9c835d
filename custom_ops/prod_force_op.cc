// deepmd_prod_force_virial(Coord, G, Rij, Nlist, Centre) -> Force, Virial, AtomVirial
// From g_ij = dE/dr_ij of a block of centre atoms (the whole frame when Centre = 0..nloc-1):
//   Force[f, Centre[i]] += sum_j g_ij,   Force[f, j] -= g_ij
//   Virial[f, a*3+b]     = -sum_ij g_ij[a] r_ij[b]
//   AtomVirial[f, j, a*3+b] += -g_ij[a] r_ij[b]   (each pair on its neighbour j, as DeePMD-kit)
// Shapes: Coord [nf, nall, 3] (only its shape is used), G and Rij [nf, nc, nnei, 3],
// Nlist [nf, nc, nnei] int32 (-1 padded, else < nall), Centre [nc] int64.
// One pass, no gradient: the model uses it when forces need no further derivative (inference);
// Paddle's index_add scatter, which it replaces, took ~15% of a compressed model's call.
#include <vector>

#include "paddle/extension.h"

namespace {

template <typename T>
void prod(const T* g, const T* rij, const int32_t* nlist, const int64_t* centre, int64_t nf, int64_t nc,
          int64_t nnei, int64_t nall, T* force, T* virial, T* av) {
  std::fill(force, force + nf * nall * 3, T(0));
  std::fill(virial, virial + nf * 9, T(0));
  std::fill(av, av + nf * nall * 9, T(0));
  for (int64_t f = 0; f < nf; ++f) {
    T* fo = force + f * nall * 3;
    T* vi = virial + f * 9;
    T* a9 = av + f * nall * 9;
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

}  // namespace

std::vector<paddle::Tensor> ProdForceVirial(const paddle::Tensor& coord, const paddle::Tensor& g,
                                            const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                            const paddle::Tensor& centre) {
  const auto gs = g.shape();
  PD_CHECK(gs.size() == 4 && gs[3] == 3 && rij.shape() == gs, "prod_force_virial: G and Rij must be nf x nc x nnei x 3");
  PD_CHECK(nlist.dtype() == paddle::DataType::INT32 && nlist.numel() == gs[0] * gs[1] * gs[2],
           "prod_force_virial: Nlist must be int32 nf x nc x nnei");
  PD_CHECK(centre.dtype() == paddle::DataType::INT64 && centre.numel() == gs[1],
           "prod_force_virial: Centre must be int64 of length nc");
  PD_CHECK(g.dtype() == paddle::DataType::FLOAT64 && rij.dtype() == g.dtype(), "prod_force_virial: float64 only");
  const int64_t nf = gs[0], nc = gs[1], nnei = gs[2], nall = coord.shape()[1];
  const int64_t* ce = centre.data<int64_t>();
  for (int64_t i = 0; i < nc; ++i) PD_CHECK(ce[i] >= 0 && ce[i] < nall, "prod_force_virial: Centre out of range");
  const int32_t* nl = nlist.data<int32_t>();
  for (int64_t k = 0; k < nf * nc * nnei; ++k) PD_CHECK(nl[k] < nall, "prod_force_virial: Nlist out of range");
  auto force = paddle::empty({nf, nall, 3}, g.dtype(), g.place());
  auto virial = paddle::empty({nf, 9}, g.dtype(), g.place());
  auto av = paddle::empty({nf, nall, 9}, g.dtype(), g.place());
  prod<double>(g.data<double>(), rij.data<double>(), nl, ce, nf, nc, nnei, nall, force.data<double>(),
               virial.data<double>(), av.data<double>());
  return {force, virial, av};
}

std::vector<std::vector<int64_t>> ProdForceVirialShape(const std::vector<int64_t>& coord,
                                                       const std::vector<int64_t>& g,
                                                       const std::vector<int64_t>& rij,
                                                       const std::vector<int64_t>& nlist,
                                                       const std::vector<int64_t>& centre) {
  return {{g[0], coord[1], 3}, {g[0], 9}, {g[0], coord[1], 9}};
}

std::vector<paddle::DataType> ProdForceVirialDtype(const paddle::DataType& coord, const paddle::DataType& g,
                                                   const paddle::DataType& rij, const paddle::DataType& nlist,
                                                   const paddle::DataType& centre) {
  return {g, g, g};
}

PD_BUILD_OP(deepmd_prod_force_virial)
    .Inputs({"Coord", "G", "Rij", "Nlist", "Centre"})
    .Outputs({"Force", "Virial", "AtomVirial"})
    .SetKernelFn(PD_KERNEL(ProdForceVirial))
    .SetInferShapeFn(PD_INFER_SHAPE(ProdForceVirialShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(ProdForceVirialDtype));
