// Paddle binding of tabulate.h:
// se_a_tabulate(Env, Coef, Info; sel, ti, type_one_side, ng) -> T, Nout
// Env: nat x nnei x 4 (float64, normalised environment of atoms of centre type ti);
// Coef: nnets x nint x K x ldg (K = 6 or 4, ldg = ng padded to 8); Info: nnets x 8 (see
// TableView). The net of neighbour type t is t (type_one_side) or ti + t * ntypes.
// T: nat x ng x 4; Nout: [1] int64, the inputs outside the tables in this call.
// Gradient wrt Env; double gradient wrt Grad(T) (the gradient is linear in it), which is
// what a force loss needs to reach the fitting net. Second derivatives in Env (positions)
// do not flow: the model runs the plain-Paddle twin when a call needs them.
#include <vector>

#include "binding.h"
#include "tabulate.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialSlots = 4096;  // below this many atoms x slots a call runs on one thread

struct Plan {
  std::vector<dpp::TableView> tabs;
  int K, ldg, nnei = 0;
};

Plan make_plan(const paddle::Tensor& env, const paddle::Tensor& coef, const paddle::Tensor& info,
               const std::vector<int>& sel, int ti, bool one_side, int ng) {
  PD_CHECK(env.dtype() == paddle::DataType::FLOAT64 && coef.dtype() == paddle::DataType::FLOAT64 &&
               info.dtype() == paddle::DataType::FLOAT64,
           "se_a_tabulate: Env, Coef and Info must be float64");
  PD_CHECK(coef.shape().size() == 4 && info.shape().size() == 2 && info.shape()[1] == 8,
           "se_a_tabulate: Coef must be nnets x nint x K x ldg and Info nnets x 8");
  Plan p;
  p.K = int(coef.shape()[2]);
  p.ldg = int(coef.shape()[3]);
  PD_CHECK(p.K == 6 || p.K == 4, "se_a_tabulate: K (coefficients per interval) must be 6 or 4, got ", p.K);
  PD_CHECK(p.ldg % dpp::kTabLanes == 0 && p.ldg >= ng, "se_a_tabulate: ldg must be ng padded to 8");
  const int ntypes = int(sel.size());
  const int nnets = int(coef.shape()[0]);
  PD_CHECK(nnets == (one_side ? ntypes : ntypes * ntypes) && info.shape()[0] == nnets,
           "se_a_tabulate: expected ", one_side ? ntypes : ntypes * ntypes, " tables, got ", nnets);
  PD_CHECK(ti >= 0 && ti < ntypes, "se_a_tabulate: ti out of range");
  for (int s : sel) p.nnei += s;
  PD_CHECK(env.shape().size() == 3 && env.shape()[1] == p.nnei && env.shape()[2] == 4,
           "se_a_tabulate: Env must be nat x sum(sel) x 4");
  const int64_t nint = coef.shape()[1];
  const double* inf = info.data<double>();
  for (int t = 0; t < ntypes; ++t) {
    const int net = one_side ? t : ti + t * ntypes;
    const double* row = inf + net * 8;
    PD_CHECK(row[5] >= 1 && row[5] + row[6] <= nint, "se_a_tabulate: Info does not fit Coef");
    p.tabs.emplace_back(coef.data<double>() + net * nint * p.K * p.ldg, row);
  }
  return p;
}

}  // namespace

std::vector<paddle::Tensor> TabulateForward(const paddle::Tensor& env, const paddle::Tensor& coef,
                                            const paddle::Tensor& info, const std::vector<int>& sel, int ti,
                                            bool type_one_side, int ng) {
  const Plan p = make_plan(env, coef, info, sel, ti, type_one_side, ng);
  const int64_t nat = env.shape()[0];
  auto out = paddle::empty({nat, ng, 4}, env.dtype(), env.place());
  auto nout = paddle::empty({1}, paddle::DataType::INT64, env.place());
  dpp::KernelThreads threads(nat * p.nnei, kSerialSlots);
  nout.data<int64_t>()[0] = p.K == 6 ? dpp::tabulate_forward<6>(env.data<double>(), nat, sel, p.tabs, ng, p.ldg, out.data<double>())
                                     : dpp::tabulate_forward<4>(env.data<double>(), nat, sel, p.tabs, ng, p.ldg, out.data<double>());
  return {out, nout};
}

std::vector<paddle::Tensor> TabulateBackward(const paddle::Tensor& env, const paddle::Tensor& coef,
                                             const paddle::Tensor& info, const paddle::Tensor& gT,
                                             const std::vector<int>& sel, int ti, bool type_one_side, int ng) {
  const Plan p = make_plan(env, coef, info, sel, ti, type_one_side, ng);
  const int64_t nat = env.shape()[0];
  PD_CHECK(gT.numel() == nat * ng * 4, "se_a_tabulate_grad: Grad(T) must be nat x ng x 4");
  auto genv = paddle::empty_like(env);
  dpp::KernelThreads threads(nat * p.nnei, kSerialSlots);
  if (p.K == 6) dpp::tabulate_backward<6>(env.data<double>(), gT.data<double>(), nat, sel, p.tabs, ng, p.ldg, genv.data<double>());
  else dpp::tabulate_backward<4>(env.data<double>(), gT.data<double>(), nat, sel, p.tabs, ng, p.ldg, genv.data<double>());
  return {genv};
}

std::vector<paddle::Tensor> TabulateDoubleBackward(const paddle::Tensor& env, const paddle::Tensor& coef,
                                                   const paddle::Tensor& info, const paddle::Tensor& gT,
                                                   const paddle::Tensor& ggenv, const std::vector<int>& sel, int ti,
                                                   bool type_one_side, int ng) {
  const Plan p = make_plan(env, coef, info, sel, ti, type_one_side, ng);
  const int64_t nat = env.shape()[0];
  PD_CHECK(ggenv.numel() == env.numel(), "se_a_tabulate_grad_grad: Grad(Grad(Env)) must be shaped like Env");
  auto ggT = paddle::empty_like(gT);
  dpp::KernelThreads threads(nat * p.nnei, kSerialSlots);
  if (p.K == 6) dpp::tabulate_double_backward<6>(env.data<double>(), ggenv.data<double>(), nat, sel, p.tabs, ng, p.ldg, ggT.data<double>());
  else dpp::tabulate_double_backward<4>(env.data<double>(), ggenv.data<double>(), nat, sel, p.tabs, ng, p.ldg, ggT.data<double>());
  return {ggT};
}

std::vector<std::vector<int64_t>> TabulateShape(const std::vector<int64_t>& env, const std::vector<int64_t>& coef,
                                                const std::vector<int64_t>& info, const std::vector<int>& sel, int ti,
                                                bool type_one_side, int ng) {
  return {{env[0], ng, 4}, {1}};
}

std::vector<paddle::DataType> TabulateDtype(const paddle::DataType& env, const paddle::DataType& coef,
                                            const paddle::DataType& info) {
  return {env, paddle::DataType::INT64};
}

std::vector<std::vector<int64_t>> TabulateGradShape(const std::vector<int64_t>& env, const std::vector<int64_t>& coef,
                                                    const std::vector<int64_t>& info, const std::vector<int64_t>& gT,
                                                    const std::vector<int>& sel, int ti, bool type_one_side, int ng) {
  return {env};
}

std::vector<paddle::DataType> TabulateGradDtype(const paddle::DataType& env, const paddle::DataType& coef,
                                                const paddle::DataType& info, const paddle::DataType& gT) {
  return {env};
}

std::vector<std::vector<int64_t>> TabulateGradGradShape(const std::vector<int64_t>& env,
                                                        const std::vector<int64_t>& coef,
                                                        const std::vector<int64_t>& info,
                                                        const std::vector<int64_t>& gT,
                                                        const std::vector<int64_t>& ggenv, const std::vector<int>& sel,
                                                        int ti, bool type_one_side, int ng) {
  return {gT};
}

std::vector<paddle::DataType> TabulateGradGradDtype(const paddle::DataType& env, const paddle::DataType& coef,
                                                    const paddle::DataType& info, const paddle::DataType& gT,
                                                    const paddle::DataType& ggenv) {
  return {gT};
}

PD_BUILD_OP(se_a_tabulate)
    .Inputs({"Env", "Coef", "Info"})
    .Outputs({"T", "Nout"})
    .Attrs({"sel: std::vector<int>", "ti: int", "type_one_side: bool", "ng: int"})
    .SetKernelFn(PD_KERNEL(TabulateForward))
    .SetInferShapeFn(PD_INFER_SHAPE(TabulateShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TabulateDtype));

PD_BUILD_GRAD_OP(se_a_tabulate)
    .Inputs({"Env", "Coef", "Info", paddle::Grad("T")})
    .Outputs({paddle::Grad("Env")})
    .Attrs({"sel: std::vector<int>", "ti: int", "type_one_side: bool", "ng: int"})
    .SetKernelFn(PD_KERNEL(TabulateBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(TabulateGradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TabulateGradDtype));

PD_BUILD_DOUBLE_GRAD_OP(se_a_tabulate)
    .Inputs({"Env", "Coef", "Info", paddle::Grad("T"), paddle::Grad(paddle::Grad("Env"))})
    .Outputs({paddle::Grad(paddle::Grad("T"))})
    .Attrs({"sel: std::vector<int>", "ti: int", "type_one_side: bool", "ng: int"})
    .SetKernelFn(PD_KERNEL(TabulateDoubleBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(TabulateGradGradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TabulateGradGradDtype));
