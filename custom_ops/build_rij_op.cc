// Paddle binding of build_rij.h:
//   deepmd_build_rij(coord, nlist, shift, centre) -> rij
// for evaluations that differentiate in r_ij only. Its gradient in coord (a serial scatter) is
// registered so that static graphs that take dE/dr_ij can be built around the operator; our
// programs never run it.
#include <vector>

#include "binding.h"
#include "build_rij.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialSlots = 1 << 16;  // below this many atoms x neighbour slots a call runs on one thread

}  // namespace

std::vector<paddle::Tensor> BuildRijForward(const paddle::Tensor& coord, const paddle::Tensor& nlist,
                                            const paddle::Tensor& shift, const paddle::Tensor& centre) {
  dpp_op::check_cpu(coord, "coord");
  dpp_op::check_cpu(nlist, "nlist");
  dpp_op::check_cpu(shift, "shift");
  dpp_op::check_cpu(centre, "centre");
  const auto cs = coord.shape(), ns = nlist.shape();
  PD_CHECK(cs.size() == 3 && cs[2] == 3, "coord must have shape [nf, nall, 3]");
  PD_CHECK(ns.size() == 3 && ns[0] == cs[0], "nlist must have shape [nf, nc, nnei]");
  PD_CHECK(nlist.dtype() == paddle::DataType::INT32, "nlist must be int32");
  const int64_t nf = cs[0], nall = cs[1], nc = ns[1], nnei = ns[2];
  PD_CHECK(centre.numel() == nc && centre.dtype() == paddle::DataType::INT64, "centre must be int64 [nc]");
  PD_CHECK(shift.numel() == nf * nc * nnei * 3, "shift must have shape [nf, nc, nnei, 3]");
  PD_CHECK(shift.dtype() == coord.dtype(), "shift must have the dtype of coord");
  const int64_t* ce = centre.data<int64_t>();
  for (int64_t c = 0; c < nc; ++c) PD_CHECK(ce[c] >= 0 && ce[c] < nall, "centre index out of range");
  auto rij = paddle::empty({nf, nc, nnei, 3}, coord.dtype(), coord.place());
  dpp::KernelThreads threads(nf * nc * nnei, kSerialSlots);
  PD_DISPATCH_FLOATING_TYPES(coord.type(), "deepmd_build_rij", ([&] {
                               dpp::build_rij<data_t>(coord.data<data_t>(), nlist.data<int32_t>(),
                                                      shift.data<data_t>(), ce, rij.data<data_t>(), nf, nall,
                                                      nc, nnei);
                             }));
  return {rij};
}

std::vector<std::vector<int64_t>> BuildRijShape(const std::vector<int64_t>& coord, const std::vector<int64_t>& nlist,
                                                const std::vector<int64_t>& shift, const std::vector<int64_t>& centre) {
  return {{nlist[0], nlist[1], nlist[2], 3}};
}
std::vector<paddle::DataType> BuildRijDtype(const paddle::DataType& coord, const paddle::DataType& nlist,
                                            const paddle::DataType& shift, const paddle::DataType& centre) {
  return {coord};
}

PD_BUILD_OP(deepmd_build_rij)
    .Inputs({"coord", "nlist", "shift", "centre"})
    .Outputs({"rij"})
    .SetKernelFn(PD_KERNEL(BuildRijForward))
    .SetInferShapeFn(PD_INFER_SHAPE(BuildRijShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(BuildRijDtype));

std::vector<paddle::Tensor> BuildRijBackward(const paddle::Tensor& coord, const paddle::Tensor& nlist,
                                             const paddle::Tensor& centre, const paddle::Tensor& grad_rij) {
  const auto cs = coord.shape(), ns = nlist.shape();
  const int64_t nf = cs[0], nall = cs[1], nc = ns[1], nnei = ns[2];
  auto gx = paddle::empty({nf, nall, 3}, coord.dtype(), coord.place());
  PD_DISPATCH_FLOATING_TYPES(coord.type(), "deepmd_build_rij_grad", ([&] {
                               dpp::build_rij_backward<data_t>(nlist.data<int32_t>(), centre.data<int64_t>(),
                                                               grad_rij.data<data_t>(), gx.data<data_t>(), nf,
                                                               nall, nc, nnei);
                             }));
  return {gx};
}

std::vector<std::vector<int64_t>> BuildRijGradShape(const std::vector<int64_t>& coord, const std::vector<int64_t>& nlist,
                                                    const std::vector<int64_t>& centre,
                                                    const std::vector<int64_t>& grad_rij) {
  return {coord};
}
std::vector<paddle::DataType> BuildRijGradDtype(const paddle::DataType& coord, const paddle::DataType& nlist,
                                                const paddle::DataType& centre, const paddle::DataType& grad_rij) {
  return {coord};
}

PD_BUILD_GRAD_OP(deepmd_build_rij)
    .Inputs({"coord", "nlist", "centre", paddle::Grad("rij")})
    .Outputs({paddle::Grad("coord")})
    .SetKernelFn(PD_KERNEL(BuildRijBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(BuildRijGradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(BuildRijGradDtype));
