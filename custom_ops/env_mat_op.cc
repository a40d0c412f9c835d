// Paddle binding of env_mat.h:
//   deepmd_env_mat(rij, nlist, atype, davg, dstd; rcut, rcut_smth) -> env
//     with gradient (wrt rij) and double gradient (wrt Grad(env) and rij);
//   deepmd_env_mat_excl(rij, nlist, atype, davg, dstd, emask; rcut, rcut_smth) -> env
//     the same with rows of excluded type pairs zero (emask: ntypes x nnei of 0 and 1).
// Input checks with readable messages live in deepmd_paddle/ops.py; the PD_CHECKs here only
// keep a wrong call from reading out of bounds.
#include <string>
#include <vector>

#include "binding.h"
#include "env_mat.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialSlots = 1 << 16;  // below this many atoms x neighbour slots a call runs on one thread

struct EnvDims {
  int64_t natoms, nnei, ntypes;
};

EnvDims env_dims(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                 const paddle::Tensor& atype, const paddle::Tensor& dstd) {
  dpp_op::check_cpu(rij, "rij");
  dpp_op::check_cpu(nlist, "nlist");
  dpp_op::check_cpu(atype, "atype");
  dpp_op::check_cpu(dstd, "dstd");
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

const void* mask_data(const paddle::Tensor* emask, const paddle::Tensor& dstd) {
  if (!emask) return nullptr;
  dpp_op::check_cpu(*emask, "emask");
  const auto ms = emask->shape();
  const auto ss = dstd.shape();
  PD_CHECK(ms.size() == 2 && ms[0] == ss[0] && ms[1] == ss[1], "emask must be [ntypes, nnei]");
  PD_CHECK(emask->dtype() == dstd.dtype(), "emask must have the dtype of rij");
  return emask->data();
}

std::vector<paddle::Tensor> env_mat_forward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                            const paddle::Tensor& atype, const paddle::Tensor& davg,
                                            const paddle::Tensor& dstd, const paddle::Tensor* emask,
                                            const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  const double rcut = dpp_op::parse_double(rcut_attr, "rcut");
  const double rcut_smth = dpp_op::parse_double(rcut_smth_attr, "rcut_smth");
  const EnvDims d = env_dims(rij, nlist, atype, dstd);
  dpp::KernelThreads threads(d.natoms * d.nnei, kSerialSlots);
  PD_CHECK(davg.shape() == dstd.shape() && davg.dtype() == dstd.dtype(),
           "davg must match dstd in shape and dtype");
  auto rs = rij.shape();
  auto env = paddle::empty({rs[0], rs[1], rs[2], 4}, rij.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(rij.type(), "deepmd_env_mat", ([&] {
                               dpp::env_mat_forward<data_t>(
                                   rij.data<data_t>(), nlist.data<int32_t>(),
                                   atype.data<int32_t>(), davg.data<data_t>(),
                                   dstd.data<data_t>(), d.natoms, d.nnei, d.ntypes, rcut,
                                   rcut_smth, env.data<data_t>(),
                                   static_cast<const data_t*>(mask_data(emask, dstd)));
                             }));
  return {env};
}

std::vector<paddle::Tensor> env_mat_backward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                             const paddle::Tensor& atype, const paddle::Tensor& dstd,
                                             const paddle::Tensor* emask, const paddle::Tensor& g_env,
                                             const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  const double rcut = dpp_op::parse_double(rcut_attr, "rcut");
  const double rcut_smth = dpp_op::parse_double(rcut_smth_attr, "rcut_smth");
  const EnvDims d = env_dims(rij, nlist, atype, dstd);
  dpp::KernelThreads threads(d.natoms * d.nnei, kSerialSlots);
  PD_CHECK(g_env.numel() == d.natoms * d.nnei * 4, "Grad(env) has the wrong size");
  auto g_rij = paddle::empty(rij.shape(), rij.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(rij.type(), "deepmd_env_mat_grad", ([&] {
                               dpp::env_mat_backward<data_t>(
                                   rij.data<data_t>(), nlist.data<int32_t>(),
                                   atype.data<int32_t>(), dstd.data<data_t>(),
                                   g_env.data<data_t>(), d.natoms, d.nnei, d.ntypes, rcut,
                                   rcut_smth, g_rij.data<data_t>(),
                                   static_cast<const data_t*>(mask_data(emask, dstd)));
                             }));
  return {g_rij};
}

std::vector<paddle::Tensor> env_mat_double_backward(
    const paddle::Tensor& rij, const paddle::Tensor& nlist, const paddle::Tensor& atype,
    const paddle::Tensor& dstd, const paddle::Tensor* emask, const paddle::Tensor& g_env,
    const paddle::Tensor& gg_rij, const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  const double rcut = dpp_op::parse_double(rcut_attr, "rcut");
  const double rcut_smth = dpp_op::parse_double(rcut_smth_attr, "rcut_smth");
  const EnvDims d = env_dims(rij, nlist, atype, dstd);
  dpp::KernelThreads threads(d.natoms * d.nnei, kSerialSlots);
  PD_CHECK(g_env.numel() == d.natoms * d.nnei * 4, "Grad(env) has the wrong size");
  PD_CHECK(gg_rij.numel() == d.natoms * d.nnei * 3, "Grad(Grad(rij)) has the wrong size");
  auto gg_env = paddle::empty(g_env.shape(), rij.dtype(), paddle::CPUPlace());
  auto g_rij = paddle::empty(rij.shape(), rij.dtype(), paddle::CPUPlace());
  PD_DISPATCH_FLOATING_TYPES(rij.type(), "deepmd_env_mat_double_grad", ([&] {
                               dpp::env_mat_double_backward<data_t>(
                                   rij.data<data_t>(), nlist.data<int32_t>(),
                                   atype.data<int32_t>(), dstd.data<data_t>(),
                                   g_env.data<data_t>(), gg_rij.data<data_t>(), d.natoms,
                                   d.nnei, d.ntypes, rcut, rcut_smth, gg_env.data<data_t>(),
                                   g_rij.data<data_t>(),
                                   static_cast<const data_t*>(mask_data(emask, dstd)));
                             }));
  return {gg_env, g_rij};
}

}  // namespace

std::vector<paddle::Tensor> EnvMatForward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                          const paddle::Tensor& atype, const paddle::Tensor& davg,
                                          const paddle::Tensor& dstd, const std::string& rcut_attr,
                                          const std::string& rcut_smth_attr) {
  return env_mat_forward(rij, nlist, atype, davg, dstd, nullptr, rcut_attr, rcut_smth_attr);
}

std::vector<paddle::Tensor> EnvMatBackward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                           const paddle::Tensor& atype, const paddle::Tensor& dstd,
                                           const paddle::Tensor& g_env, const std::string& rcut_attr,
                                           const std::string& rcut_smth_attr) {
  return env_mat_backward(rij, nlist, atype, dstd, nullptr, g_env, rcut_attr, rcut_smth_attr);
}

std::vector<paddle::Tensor> EnvMatDoubleBackward(
    const paddle::Tensor& rij, const paddle::Tensor& nlist, const paddle::Tensor& atype,
    const paddle::Tensor& dstd, const paddle::Tensor& g_env, const paddle::Tensor& gg_rij,
    const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  return env_mat_double_backward(rij, nlist, atype, dstd, nullptr, g_env, gg_rij, rcut_attr, rcut_smth_attr);
}

std::vector<paddle::Tensor> EnvMatExclForward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                              const paddle::Tensor& atype, const paddle::Tensor& davg,
                                              const paddle::Tensor& dstd, const paddle::Tensor& emask,
                                              const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  return env_mat_forward(rij, nlist, atype, davg, dstd, &emask, rcut_attr, rcut_smth_attr);
}

std::vector<paddle::Tensor> EnvMatExclBackward(const paddle::Tensor& rij, const paddle::Tensor& nlist,
                                               const paddle::Tensor& atype, const paddle::Tensor& dstd,
                                               const paddle::Tensor& emask, const paddle::Tensor& g_env,
                                               const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  return env_mat_backward(rij, nlist, atype, dstd, &emask, g_env, rcut_attr, rcut_smth_attr);
}

std::vector<paddle::Tensor> EnvMatExclDoubleBackward(
    const paddle::Tensor& rij, const paddle::Tensor& nlist, const paddle::Tensor& atype,
    const paddle::Tensor& dstd, const paddle::Tensor& emask, const paddle::Tensor& g_env,
    const paddle::Tensor& gg_rij, const std::string& rcut_attr, const std::string& rcut_smth_attr) {
  return env_mat_double_backward(rij, nlist, atype, dstd, &emask, g_env, gg_rij, rcut_attr, rcut_smth_attr);
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

std::vector<std::vector<int64_t>> EnvMatExclShape(const std::vector<int64_t>& rij,
                                                  const std::vector<int64_t>& nlist,
                                                  const std::vector<int64_t>& atype,
                                                  const std::vector<int64_t>& davg,
                                                  const std::vector<int64_t>& dstd,
                                                  const std::vector<int64_t>& emask,
                                                  const std::string& rcut_attr,
                                                  const std::string& rcut_smth_attr) {
  return {{rij[0], rij[1], rij[2], 4}};
}

std::vector<paddle::DataType> EnvMatExclDtype(const paddle::DataType& rij, const paddle::DataType& nlist,
                                              const paddle::DataType& atype, const paddle::DataType& davg,
                                              const paddle::DataType& dstd, const paddle::DataType& emask) {
  return {rij};
}

PD_BUILD_OP(deepmd_env_mat_excl)
    .Inputs({"rij", "nlist", "atype", "davg", "dstd", "emask"})
    .Outputs({"env"})
    .Attrs({"rcut: std::string", "rcut_smth: std::string"})
    .SetKernelFn(PD_KERNEL(EnvMatExclForward))
    .SetInferShapeFn(PD_INFER_SHAPE(EnvMatExclShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(EnvMatExclDtype));

PD_BUILD_GRAD_OP(deepmd_env_mat_excl)
    .Inputs({"rij", "nlist", "atype", "dstd", "emask", paddle::Grad("env")})
    .Outputs({paddle::Grad("rij")})
    .Attrs({"rcut: std::string", "rcut_smth: std::string"})
    .SetKernelFn(PD_KERNEL(EnvMatExclBackward));

PD_BUILD_DOUBLE_GRAD_OP(deepmd_env_mat_excl)
    .Inputs({"rij", "nlist", "atype", "dstd", "emask", paddle::Grad("env"),
             paddle::Grad(paddle::Grad("rij"))})
    .Outputs({paddle::Grad(paddle::Grad("env")), paddle::Grad("rij")})
    .Attrs({"rcut: std::string", "rcut_smth: std::string"})
    .SetKernelFn(PD_KERNEL(EnvMatExclDoubleBackward));
