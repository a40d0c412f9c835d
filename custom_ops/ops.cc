// Paddle binding of the deepmd_paddle kernels: shapes, dtypes and dispatch only.
//
//   deepmd_neighbor_list(coord, box, atype; rcut, sel, pbc) -> nlist, shift, nmax, mindist
//   deepmd_env_mat(rij, nlist, atype, davg, dstd; rcut, rcut_smth) -> env
//     with gradient (wrt rij) and double gradient (wrt Grad(env) and rij).
// Input checks with readable messages live in deepmd_paddle/ops.py; the PD_CHECKs here only
// keep a wrong call from reading out of bounds.
// Cutoffs travel as decimal strings (Python's repr, which round-trips exactly): Paddle 3.3's
// PIR backward rejects `double` custom attributes, and `float` would round them.
#include <cstdlib>
#include <locale>
#include <sstream>
#include <string>
#include <vector>

#include "env_mat.h"
#include "neighbor_list.h"
#include "paddle/extension.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

int64_t sum_sel(const std::vector<int>& sel) {
  int64_t n = 0;
  for (int s : sel) n += s > 0 ? s : 0;
  return n;
}

double parse_double(const std::string& text, const char* name) {
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  double v = 0.0;
  in >> v;
  PD_CHECK(!in.fail(), "deepmd_paddle custom op: attribute ", name, " = '", text,
           "' is not a number");
  return v;
}

constexpr int64_t kSerialAtoms = 512;       // neighbour list: centre atoms
constexpr int64_t kSerialSlots = 1 << 16;   // env mat: atoms x neighbour slots

void check_cpu(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), "deepmd_paddle custom op: ", name, " must be on the CPU");
}

}  // namespace

// ---------------------------------------------------------------- neighbour list
std::vector<paddle::Tensor> NeighborListForward(const paddle::Tensor& coord,
                                                const paddle::Tensor& box,
                                                const paddle::Tensor& atype, const std::string& rcut_attr,
                                                const std::vector<int>& sel, bool pbc) {
  const double rcut = parse_double(rcut_attr, "rcut");
  check_cpu(coord, "coord");
  check_cpu(box, "box");
  check_cpu(atype, "atype");
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
                               deepmd_paddle::neighbor_list<data_t>(
                                   coord.data<data_t>(), box.data<data_t>(),
                                   atype.data<int32_t>(), nf, nloc, rcut, sel, pbc,
                                   nlist.data<int32_t>(), shift.data<data_t>(),
                                   nmax.data<int32_t>(), mindist.data<data_t>());
                             }));
  return {nlist, shift, nmax, mindist};
}

std::vector<std::vector<int64_t>> NeighborListShape(const std::vector<int64_t>& coord,
                                                    const std::vector<int64_t>& box,
                                                    const std::vector<int64_t>& atype,
                                                    const std::string& rcut_attr, const std::vector<int>& sel,
                                                    bool pbc) {
  const int64_t nnei = sum_sel(sel), ntypes = static_cast<int64_t>(sel.size());
  return {{coord[0], coord[1], nnei}, {coord[0], coord[1], nnei, 3}, {coord[0], ntypes},
          {coord[0]}};
}

std::vector<paddle::DataType> NeighborListDtype(const paddle::DataType& coord,
                                                const paddle::DataType& box,
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

// ---------------------------------------------------------------- environment matrix
namespace {

struct EnvDims {
  int64_t natoms, nnei, ntypes;
};

EnvDims env_dims(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                 const paddle::Tensor& atype, const paddle::Tensor& dstd) {
  check_cpu(rij, "rij");
  check_cpu(nlist, "nlist");
  check_cpu(atype, "atype");
  check_cpu(dstd, "dstd");
  const auto rs = rij.shape();
  PD_CHECK(rs.size() == 4 && rs[3] == 3, "rij must have shape [nf, nloc, nnei, 3]");
  EnvDims d{rs[0] * rs[1], rs[2], 0};
  PD_CHECK(nlist.numel() == d.natoms * d.nnei, "nlist must have shape [nf, nloc, nnei]");
  PD_CHECK(nlist.dtype() == paddle::DataType::INT32, "nlist must be int32");
  PD_CHECK(atype.numel() == d.natoms, "atype must have shape [nf, nloc]");
  PD_CHECK(atype.dtype() == paddle::DataType::INT32, "atype must be int32");
  const auto ss = dstd.shape();
  PD_CHECK(ss.size() == 3 && ss[1] == d.nnei && ss[2] == 4, "dstd must be [ntypes, nnei, 4]");
  PD_CHECK(dstd.dtype() == rij.dtype(), "dstd must have the dtype of rij");
  d.ntypes = ss[0];
  return d;
}

}  // namespace

std::vector<paddle::Tensor> EnvMatForward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                          const paddle::Tensor& atype, const paddle::Tensor& davg,
                                          const paddle::Tensor& dstd, const std::string& rcut_attr,
                                          const std::string& rcut_smth_attr) {
  const double rcut = parse_double(rcut_attr, "rcut");
  const double rcut_smth = parse_double(rcut_smth_attr, "rcut_smth");
  const EnvDims d = env_dims(rij, nlist, atype, dstd);
  dpp::KernelThreads threads(d.natoms * d.nnei, kSerialSlots);
  PD_CHECK(davg.shape() == dstd.shape() && davg.dtype() == dstd.dtype(),
           "davg must match dstd in shape and dtype");
  auto rs = rij.shape();
  auto env = paddle::empty({rs[0], rs[1], rs[2], 4}, rij.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(rij.type(), "deepmd_env_mat", ([&] {
                               deepmd_paddle::env_mat_forward<data_t>(
                                   rij.data<data_t>(), nlist.data<int32_t>(),
                                   atype.data<int32_t>(), davg.data<data_t>(),
                                   dstd.data<data_t>(), d.natoms, d.nnei, d.ntypes, rcut,
                                   rcut_smth, env.data<data_t>());
                             }));
  return {env};
}

std::vector<paddle::Tensor> EnvMatBackward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                           const paddle::Tensor& atype,
                                           const paddle::Tensor& dstd,
                                           const paddle::Tensor& g_env, const std::string& rcut_attr,
                                           const std::string& rcut_smth_attr) {
  const double rcut = parse_double(rcut_attr, "rcut");
  const double rcut_smth = parse_double(rcut_smth_attr, "rcut_smth");
  const EnvDims d = env_dims(rij, nlist, atype, dstd);
  dpp::KernelThreads threads(d.natoms * d.nnei, kSerialSlots);
  PD_CHECK(g_env.numel() == d.natoms * d.nnei * 4, "Grad(env) has the wrong size");
  auto g_rij = paddle::empty(rij.shape(), rij.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(rij.type(), "deepmd_env_mat_grad", ([&] {
                               deepmd_paddle::env_mat_backward<data_t>(
                                   rij.data<data_t>(), nlist.data<int32_t>(),
                                   atype.data<int32_t>(), dstd.data<data_t>(),
                                   g_env.data<data_t>(), d.natoms, d.nnei, d.ntypes, rcut,
                                   rcut_smth, g_rij.data<data_t>());
                             }));
  return {g_rij};
}

std::vector<paddle::Tensor> EnvMatDoubleBackward(
    const paddle::Tensor& rij, const paddle::Tensor& nlist, const paddle::Tensor& atype,
    const paddle::Tensor& dstd, const paddle::Tensor& g_env, const paddle::Tensor& gg_rij,
    const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  const double rcut = parse_double(rcut_attr, "rcut");
  const double rcut_smth = parse_double(rcut_smth_attr, "rcut_smth");
  const EnvDims d = env_dims(rij, nlist, atype, dstd);
  dpp::KernelThreads threads(d.natoms * d.nnei, kSerialSlots);
  PD_CHECK(g_env.numel() == d.natoms * d.nnei * 4, "Grad(env) has the wrong size");
  PD_CHECK(gg_rij.numel() == d.natoms * d.nnei * 3, "Grad(Grad(rij)) has the wrong size");
  auto gg_env = paddle::empty(g_env.shape(), rij.dtype(), paddle::CPUPlace());
  auto g_rij = paddle::empty(rij.shape(), rij.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(rij.type(), "deepmd_env_mat_double_grad", ([&] {
                               deepmd_paddle::env_mat_double_backward<data_t>(
                                   rij.data<data_t>(), nlist.data<int32_t>(),
                                   atype.data<int32_t>(), dstd.data<data_t>(),
                                   g_env.data<data_t>(), gg_rij.data<data_t>(), d.natoms,
                                   d.nnei, d.ntypes, rcut, rcut_smth, gg_env.data<data_t>(),
                                   g_rij.data<data_t>());
                             }));
  return {gg_env, g_rij};
}

std::vector<std::vector<int64_t>> EnvMatShape(const std::vector<int64_t>& rij,
                                              const std::vector<int64_t>& nlist,
                                              const std::vector<int64_t>& atype,
                                              const std::vector<int64_t>& davg,
                                              const std::vector<int64_t>& dstd, const std::string& rcut_attr,
                                              const std::string& rcut_smth_attr) {
  return {{rij[0], rij[1], rij[2], 4}};
}

std::vector<paddle::DataType> EnvMatDtype(const paddle::DataType& rij,
                                          const paddle::DataType& nlist,
                                          const paddle::DataType& atype,
                                          const paddle::DataType& davg,
                                          const paddle::DataType& dstd) {
  return {rij};
}

PD_BUILD_OP(deepmd_env_mat)
    .Inputs({"rij", "nlist", "atype", "davg", "dstd"})
    .Outputs({"env"})
    .Attrs({"rcut: std::string", "rcut_smth: std::string"})
    .SetKernelFn(PD_KERNEL(EnvMatForward))
    .SetInferShapeFn(PD_INFER_SHAPE(EnvMatShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(EnvMatDtype));

PD_BUILD_GRAD_OP(deepmd_env_mat)
    .Inputs({"rij", "nlist", "atype", "dstd", paddle::Grad("env")})
    .Outputs({paddle::Grad("rij")})
    .Attrs({"rcut: std::string", "rcut_smth: std::string"})
    .SetKernelFn(PD_KERNEL(EnvMatBackward));

PD_BUILD_DOUBLE_GRAD_OP(deepmd_env_mat)
    .Inputs({"rij", "nlist", "atype", "dstd", paddle::Grad("env"),
             paddle::Grad(paddle::Grad("rij"))})
    .Outputs({paddle::Grad(paddle::Grad("env")), paddle::Grad("rij")})
    .Attrs({"rcut: std::string", "rcut_smth: std::string"})
    .SetKernelFn(PD_KERNEL(EnvMatDoubleBackward));

// ---------------------------------------------------------------- r_ij (no gradient)
// rij[f, c, k] = coord[f, j] + shift[f, c, k] - coord[f, centre[c]] with j = max(nlist[f, c, k], 0):
// the numbers of model/env_mat.py build_rij (centre = 0..nloc-1) and of export.py block_rij (a
// block of centre atoms among nall), in one pass (Paddle's broadcasting subtract on these shapes
// costs several ns per element). For evaluations that differentiate in r_ij only.
namespace {

template <typename T>
void build_rij(const T* x, const int32_t* nl, const T* sh, const int64_t* centre, T* r, int64_t nf, int64_t nall,
               int64_t nc, int64_t nnei) {
#pragma omp parallel for schedule(static)
  for (int64_t a = 0; a < nf * nc; ++a) {
    const T* xf = x + (a / nc) * nall * 3;  // the frame's first atom
    const T* xi = xf + centre[a % nc] * 3;
    for (int64_t k = 0; k < nnei; ++k) {
      const int64_t s = a * nnei + k;
      const T* xj = xf + int64_t(nl[s] > 0 ? nl[s] : 0) * 3;
      for (int d = 0; d < 3; ++d) r[s * 3 + d] = xj[d] + sh[s * 3 + d] - xi[d];
    }
  }
}

}  // namespace

std::vector<paddle::Tensor> BuildRijForward(const paddle::Tensor& coord, const paddle::Tensor& nlist,
                                            const paddle::Tensor& shift, const paddle::Tensor& centre) {
  check_cpu(coord, "coord");
  check_cpu(nlist, "nlist");
  check_cpu(shift, "shift");
  check_cpu(centre, "centre");
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
                               build_rij<data_t>(coord.data<data_t>(), nlist.data<int32_t>(), shift.data<data_t>(),
                                                 ce, rij.data<data_t>(), nf, nall, nc, nnei);
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

// The gradient in coord (a scatter, serial): present so that static graphs that take dE/dr_ij
// can be built around the operator; our programs never run it.
std::vector<paddle::Tensor> BuildRijBackward(const paddle::Tensor& coord, const paddle::Tensor& nlist,
                                             const paddle::Tensor& centre, const paddle::Tensor& grad_rij) {
  const auto cs = coord.shape(), ns = nlist.shape();
  const int64_t nf = cs[0], nall = cs[1], nc = ns[1], nnei = ns[2];
  auto gx = paddle::full({nf, nall, 3}, 0.0, coord.dtype(), coord.place());
  PD_DISPATCH_FLOATING_TYPES(coord.type(), "deepmd_build_rij_grad", ([&] {
                               const int32_t* nl = nlist.data<int32_t>();
                               const int64_t* ce = centre.data<int64_t>();
                               const data_t* g = grad_rij.data<data_t>();
                               data_t* out = gx.data<data_t>();
                               for (int64_t a = 0; a < nf * nc; ++a) {
                                 data_t* of = out + (a / nc) * nall * 3;
                                 data_t* oi = of + ce[a % nc] * 3;
                                 for (int64_t k = 0; k < nnei; ++k) {
                                   const int64_t s = a * nnei + k;
                                   data_t* oj = of + int64_t(nl[s] > 0 ? nl[s] : 0) * 3;
                                   for (int d = 0; d < 3; ++d) {
                                     oj[d] += g[s * 3 + d];
                                     oi[d] -= g[s * 3 + d];
                                   }
                                 }
                               }
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
