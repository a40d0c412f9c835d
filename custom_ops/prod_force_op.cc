// Paddle binding of prod_force.h (float64 only, no gradient):
//   deepmd_prod_force_virial(Coord, G, Rij, Nlist, Centre) -> Force, Virial, AtomVirial
// Coord [nf, nall, 3] (only its shape is used), G and Rij [nf, nc, nnei, 3], Nlist [nf, nc, nnei]
// int32, Centre [nc] int64. The model uses it when forces need no further derivative (inference).
#include <vector>

#include "binding.h"
#include "prod_force.h"

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
  dpp::prod_force_virial<double>(g.data<double>(), rij.data<double>(), nl, ce, nf, nc, nnei, nall,
                                 force.data<double>(), virial.data<double>(), av.data<double>());
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
