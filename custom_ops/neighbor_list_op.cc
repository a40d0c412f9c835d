// Paddle binding of neighbor_list.h:
//   deepmd_neighbor_list(coord, box, atype; rcut, sel, pbc) -> nlist, shift, nmax, mindist
// Input checks with readable messages live in deepmd_paddle/ops.py; the PD_CHECKs here only
// keep a wrong call from reading out of bounds.
#include <string>
#include <vector>

#include "binding.h"
#include "neighbor_list.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialAtoms = 512;  // below this many centre atoms a call runs on one thread

int64_t sum_sel(const std::vector<int>& sel) {
  int64_t n = 0;
  for (int s : sel) n += s > 0 ? s : 0;
  return n;
}

}  // namespace

std::vector<paddle::Tensor> NeighborListForward(const paddle::Tensor& coord, const paddle::Tensor& box,
                                                const paddle::Tensor& atype, const std::string& rcut_attr,
                                                const std::vector<int>& sel, bool pbc) {
  const double rcut = dpp_op::parse_double(rcut_attr, "rcut");
  dpp_op::check_cpu(coord, "coord");
  dpp_op::check_cpu(box, "box");
  dpp_op::check_cpu(atype, "atype");
  const auto cs = coord.shape();
  PD_CHECK(cs.size() == 3 && cs[2] == 3, "coord must have shape [nf, nloc, 3]");
  const int64_t nf = cs[0], nloc = cs[1];
  PD_CHECK(atype.numel() == nf * nloc, "atype must have shape [nf, nloc]");
  PD_CHECK(atype.dtype() == paddle::DataType::INT32, "atype must be int32");
  PD_CHECK(!pbc || box.numel() == nf * 9, "box must have shape [nf, 9]");
  PD_CHECK(box.dtype() == coord.dtype(), "box must have the dtype of coord");
  PD_CHECK(rcut > 0, "rcut must be positive");
  const int64_t nnei = sum_sel(sel), ntypes = static_cast<int64_t>(sel.size());
  dpp::KernelThreads threads(nloc, kSerialAtoms);
  auto nlist = paddle::empty({nf, nloc, nnei}, paddle::DataType::INT32, paddle::CPUPlace());
  auto shift = paddle::empty({nf, nloc, nnei, 3}, coord.dtype(), paddle::CPUPlace());
  auto nmax = paddle::empty({nf, ntypes}, paddle::DataType::INT32, paddle::CPUPlace());
  auto mindist = paddle::empty({nf}, coord.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(coord.type(), "deepmd_neighbor_list", ([&] {
                               dpp::neighbor_list<data_t>(coord.data<data_t>(), box.data<data_t>(),
                                                          atype.data<int32_t>(), nf, nloc, rcut, sel, pbc,
                                                          nlist.data<int32_t>(), shift.data<data_t>(),
                                                          nmax.data<int32_t>(), mindist.data<data_t>());
                             }));
  return {nlist, shift, nmax, mindist};
}

std::vector<std::vector<int64_t>> NeighborListShape(const std::vector<int64_t>& coord,
                                                    const std::vector<int64_t>& box,
                                                    const std::vector<int64_t>& atype, const std::string& rcut_attr,
                                                    const std::vector<int>& sel, bool pbc) {
  const int64_t nnei = sum_sel(sel), ntypes = static_cast<int64_t>(sel.size());
  return {{coord[0], coord[1], nnei}, {coord[0], coord[1], nnei, 3}, {coord[0], ntypes}, {coord[0]}};
}

std::vector<paddle::DataType> NeighborListDtype(const paddle::DataType& coord, const paddle::DataType& box,
                                                const paddle::DataType& atype) {
  return {paddle::DataType::INT32, coord, paddle::DataType::INT32, coord};
}

PD_BUILD_OP(deepmd_neighbor_list)
    .Inputs({"coord", "box", "atype"})
    .Outputs({"nlist", "shift", "nmax", "mindist"})
    .Attrs({"rcut: std::string", "sel: std::vector<int>", "pbc: bool"})
    .SetKernelFn(PD_KERNEL(NeighborListForward))
    .SetInferShapeFn(PD_INFER_SHAPE(NeighborListShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(NeighborListDtype));
