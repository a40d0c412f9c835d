// Paddle bindings of embedding_train.h (training):
//   se_a_embed_train(Env, Params; sel, nlayer, timestep) -> T, whose gradient also reaches the
//     weights (autograd);
//   se_a_embed_vjp, se_a_embed_ggt, se_a_embed_pgrad: the pieces of a hand-assembled training
//     step (deepmd_paddle/train/fused_step.py), without gradients.
// Env, Params and T as in embedding_op.cc.
#include <cstdlib>
#include <vector>

#include "binding.h"
#include "embedding.h"
#include "embedding_op.h"
#include "embedding_train.h"
#include "threads.h"

namespace {

// The flat parameter-gradient buffer (net order, W b idt per layer) split into tensors shaped
// like the parameters.
template <typename T>
std::vector<paddle::Tensor> split_param_grads(const std::vector<T>& flat, const std::vector<paddle::Tensor>& params) {
  std::vector<paddle::Tensor> out;
  int64_t off = 0;
  for (const auto& p : params) {
    auto g = paddle::empty(p.shape(), p.dtype(), p.place());
    std::copy(flat.begin() + off, flat.begin() + off + p.numel(), g.data<T>());
    off += p.numel();
    out.push_back(g);
  }
  return out;
}

template <typename T>
std::vector<paddle::Tensor> train_sweep(int mode, const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                        const paddle::Tensor& gT, const paddle::Tensor* ggenv,
                                        const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  std::vector<T> flat(total, T(0));
  paddle::Tensor first = mode == 0 ? paddle::empty_like(env) : paddle::empty_like(gT);
  dpp::KernelThreads threads(env.shape()[0], dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_train_sweep<T>(mode, env.data<T>(), gT.data<T>(), ggenv ? ggenv->data<T>() : nullptr,
                                 env.shape()[0], sel, nets, ng, mode == 0 ? first.data<T>() : nullptr,
                                 mode == 1 ? first.data<T>() : nullptr, flat.data());
  auto grads = split_param_grads(flat, params);
  grads.insert(grads.begin(), first);
  return grads;
}

}  // namespace

// ---------------------------------------------------------------- training variant
// se_a_embed_train: the same forward; its gradient also reaches the weights, and its double
// gradient (from a loss on forces) reaches gT and the weights. The double gradient does not
// flow back into Env (second derivatives in positions): the model uses this operator only
// when the coordinates need no gradient.
std::vector<paddle::Tensor> SeAEmbedTrainBackward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                                  const paddle::Tensor& gT, const std::vector<int>& sel, int nlayer,
                                                  bool timestep) {
  auto r = env.dtype() == paddle::DataType::FLOAT64
               ? train_sweep<double>(0, env, params, gT, nullptr, sel, nlayer, timestep)
               : train_sweep<float>(0, env, params, gT, nullptr, sel, nlayer, timestep);
  return r;  // {Grad(Env), Grad(Params)...}
}

std::vector<paddle::Tensor> SeAEmbedTrainDoubleBackward(const paddle::Tensor& env,
                                                        const std::vector<paddle::Tensor>& params,
                                                        const paddle::Tensor& gT, const paddle::Tensor& ggenv,
                                                        const std::vector<int>& sel, int nlayer, bool timestep) {
  auto r = env.dtype() == paddle::DataType::FLOAT64
               ? train_sweep<double>(1, env, params, gT, &ggenv, sel, nlayer, timestep)
               : train_sweep<float>(1, env, params, gT, &ggenv, sel, nlayer, timestep);
  return r;  // {Grad(Grad(T)), Grad(Params)...}
}

PD_BUILD_OP(se_a_embed_train)
    .Inputs({"Env", paddle::Vec("Params")})
    .Outputs({"T"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedDtype));

PD_BUILD_GRAD_OP(se_a_embed_train)
    .Inputs({"Env", paddle::Vec("Params"), paddle::Grad("T")})
    .Outputs({paddle::Grad("Env"), paddle::Grad(paddle::Vec("Params"))})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedTrainBackward));

PD_BUILD_DOUBLE_GRAD_OP(se_a_embed_train)
    .Inputs({"Env", paddle::Vec("Params"), paddle::Grad("T"), paddle::Grad(paddle::Grad("Env"))})
    .Outputs({paddle::Grad(paddle::Grad("T")), paddle::Grad(paddle::Vec("Params"))})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedTrainDoubleBackward));

// ---------------------------------------------------------------- hand-assembled training step
// Three operators without gradients, for deepmd_paddle/train/fused_step.py, which assembles
// the gradient of an energy/force/virial loss itself so that each embedding pass runs once:
//   se_a_embed_vjp(Env, Params, GT, Cache)     -> dL/dEnv for a cotangent GT on T
//   se_a_embed_ggt(Env, Params, A, Cache)      -> dL/dGT for a cotangent A on dE/dEnv
// Cache: G and G' from se_a_embed_cached's forward, or empty (the nets are evaluated again).
//   se_a_embed_pgrad(Env, Params, TBar, GT, A, Tape) -> the weight gradients, flat (net order,
//                                                 W b idt per layer); TBar, A or Tape may be empty.
//   se_a_embed_tape(Env, Params) -> T, Cache, Tape: se_a_embed_cached that also keeps the nets'
//                                                 activations for pgrad (no forward pass there).
namespace {

template <typename T>
const T* data_or_null(const paddle::Tensor& x) {
  return x.numel() > 0 ? x.data<T>() : nullptr;
}

template <typename T>
paddle::Tensor vjp_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& gT,
                        const paddle::Tensor& cache, const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const bool cached = cache.numel() > 0;
  PD_CHECK(!cached || (cache.shape().size() == 3 && cache.shape()[0] == env.shape()[0] &&
                       cache.shape()[1] == env.shape()[1] && cache.shape()[2] == 2 * dpp_op::cache_ld(ng)),
           "se_a_embed_vjp: Cache must come from se_a_embed_cached on the same Env");
  auto genv = paddle::empty_like(env);
  dpp::KernelThreads threads(env.shape()[0], dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_backward<T>(env.data<T>(), gT.data<T>(), env.shape()[0], sel, nets, ng, width, genv.data<T>(),
                              cached ? cache.data<T>() : nullptr, dpp_op::cache_ld(ng));
  return genv;
}

template <typename T>
paddle::Tensor ggt_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& a,
                        const paddle::Tensor& cache, const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  PD_CHECK(a.shape() == env.shape(), "se_a_embed_ggt: A must have the shape of Env");
  auto out = paddle::empty({env.shape()[0], ng, 4}, env.dtype(), env.place());
  dpp::KernelThreads threads(env.shape()[0], dpp_op::kEmbedSerialAtoms);
  const bool cached = cache.numel() > 0;
  PD_CHECK(!cached || (cache.shape().size() == 3 && cache.shape()[0] == env.shape()[0] &&
                       cache.shape()[1] == env.shape()[1] && cache.shape()[2] == 2 * dpp_op::cache_ld(ng)),
           "se_a_embed_ggt: Cache must come from se_a_embed_cached on the same Env");
  dpp::se_a_embed_ggt<T>(env.data<T>(), a.data<T>(), env.shape()[0], sel, nets, ng, width, out.data<T>(),
                         cached ? cache.data<T>() : nullptr, dpp_op::cache_ld(ng));
  return out;
}

template <typename T>
paddle::Tensor pgrad_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                          const paddle::Tensor& tbar, const paddle::Tensor& gT, const paddle::Tensor& a,
                          const paddle::Tensor& tape, const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const int64_t nat = env.shape()[0];
  PD_CHECK(tbar.numel() == 0 || tbar.numel() == nat * ng * 4, "se_a_embed_pgrad: TBar must be nat x ng x 4 or empty");
  PD_CHECK(a.numel() == 0 || (a.shape() == env.shape() && gT.numel() == nat * ng * 4),
           "se_a_embed_pgrad: A must have the shape of Env (or be empty) and GT be nat x ng x 4");
  const int tape_ld = nets.empty() ? 0 : dpp::tape_width(nets[0]);
  PD_CHECK(tape.numel() == 0 || (tape.shape().size() == 3 && tape.shape()[0] == nat &&
                                 tape.shape()[1] == env.shape()[1] && tape.shape()[2] == tape_ld),
           "se_a_embed_pgrad: Tape must come from se_a_embed_tape on the same Env and Params (or be empty)");
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  auto out = paddle::full({total}, 0.0, env.dtype(), env.place());
  dpp::KernelThreads threads(nat, dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_param_grad<T>(env.data<T>(), data_or_null<T>(tbar), data_or_null<T>(gT), data_or_null<T>(a), nat, sel,
                                nets, ng, nullptr, nullptr, out.data<T>(), data_or_null<T>(tape), tape_ld);
  return out;
}

// se_a_embed_tape: T, the cache of se_a_embed_cached (G, G') and the tape for pgrad; both empty
// above DEEPMD_PADDLE_EMBED_CACHE_MB (default 512), the tape alone when only it does not fit.
template <typename T>
std::vector<paddle::Tensor> tape_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                      const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const int64_t nat = env.shape()[0], nnei = env.shape()[1];
  const int ldc = dpp_op::cache_ld(ng), tape_ld = nets.empty() ? 0 : dpp::tape_width(nets[0]);
  const char* budget_env = std::getenv("DEEPMD_PADDLE_EMBED_CACHE_MB");
  const double budget = (budget_env ? std::atof(budget_env) : 512.0) * 1024 * 1024;
  const double row = double(nat) * nnei * sizeof(T);
  const bool keep = row * 2 * ldc <= budget, keep_tape = row * (2 * ldc + tape_ld) <= budget;
  auto out = paddle::empty({nat, ng, 4}, env.dtype(), env.place());
  auto cache = paddle::empty({keep ? nat : 0, nnei, 2 * ldc}, env.dtype(), env.place());
  auto tape = paddle::empty({keep_tape ? nat : 0, nnei, tape_ld}, env.dtype(), env.place());
  dpp::KernelThreads threads(nat, dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_tape_forward<T>(env.data<T>(), nat, sel, nets, ng, out.data<T>(), keep ? cache.data<T>() : nullptr,
                                  ldc, keep_tape ? tape.data<T>() : nullptr, tape_ld);
  return {out, cache, tape};
}

}  // namespace

std::vector<paddle::Tensor> SeAEmbedVjp(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                        const paddle::Tensor& gT, const paddle::Tensor& cache,
                                        const std::vector<int>& sel, int nlayer, bool timestep) {
  dpp_op::check_env(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64) return {vjp_impl<double>(env, params, gT, cache, sel, nlayer, timestep)};
  return {vjp_impl<float>(env, params, gT, cache, sel, nlayer, timestep)};
}

std::vector<paddle::Tensor> SeAEmbedGgt(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                        const paddle::Tensor& a, const paddle::Tensor& cache,
                                        const std::vector<int>& sel, int nlayer, bool timestep) {
  dpp_op::check_env(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64)
    return {ggt_impl<double>(env, params, a, cache, sel, nlayer, timestep)};
  return {ggt_impl<float>(env, params, a, cache, sel, nlayer, timestep)};
}

std::vector<paddle::Tensor> SeAEmbedPgrad(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                          const paddle::Tensor& tbar, const paddle::Tensor& gT,
                                          const paddle::Tensor& a, const paddle::Tensor& tape, const std::vector<int>& sel,
                                          int nlayer, bool timestep) {
  dpp_op::check_env(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64)
    return {pgrad_impl<double>(env, params, tbar, gT, a, tape, sel, nlayer, timestep)};
  return {pgrad_impl<float>(env, params, tbar, gT, a, tape, sel, nlayer, timestep)};
}

std::vector<paddle::Tensor> SeAEmbedTape(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                         const std::vector<int>& sel, int nlayer, bool timestep) {
  dpp_op::check_env(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64) return tape_impl<double>(env, params, sel, nlayer, timestep);
  return tape_impl<float>(env, params, sel, nlayer, timestep);
}

std::vector<std::vector<int64_t>> SeAEmbedVjpShape(const std::vector<int64_t>& env,
                                                   const std::vector<std::vector<int64_t>>& params,
                                                   const std::vector<int64_t>& gT, const std::vector<int64_t>& cache) {
  return {env};
}

std::vector<paddle::DataType> SeAEmbedVjpDtype(const paddle::DataType& env, const std::vector<paddle::DataType>& params,
                                               const paddle::DataType& gT, const paddle::DataType& cache) {
  return {env};
}

std::vector<std::vector<int64_t>> SeAEmbedGgtShape(const std::vector<int64_t>& env,
                                                   const std::vector<std::vector<int64_t>>& params,
                                                   const std::vector<int64_t>& a, const std::vector<int64_t>& cache,
                                                   const std::vector<int>& sel,
                                                   int nlayer, bool timestep) {
  return SeAEmbedShape(env, params, sel, nlayer, timestep);
}

std::vector<paddle::DataType> SeAEmbedGgtDtype(const paddle::DataType& env, const std::vector<paddle::DataType>& params,
                                               const paddle::DataType& a, const paddle::DataType& cache) {
  return {env};
}

std::vector<std::vector<int64_t>> SeAEmbedPgradShape(const std::vector<int64_t>& env,
                                                     const std::vector<std::vector<int64_t>>& params,
                                                     const std::vector<int64_t>& tbar, const std::vector<int64_t>& gT,
                                                     const std::vector<int64_t>& a, const std::vector<int64_t>& tape) {
  int64_t total = 0;
  for (const auto& p : params) {
    int64_t n = 1;
    for (auto d : p) n *= d;
    total += n;
  }
  return {{total}};
}

std::vector<paddle::DataType> SeAEmbedPgradDtype(const paddle::DataType& env,
                                                 const std::vector<paddle::DataType>& params,
                                                 const paddle::DataType& tbar, const paddle::DataType& gT,
                                                 const paddle::DataType& a, const paddle::DataType& tape) {
  return {env};
}

PD_BUILD_OP(se_a_embed_vjp)
    .Inputs({"Env", paddle::Vec("Params"), "GT", "Cache"})
    .Outputs({"GEnv"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedVjp))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedVjpShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedVjpDtype));

PD_BUILD_OP(se_a_embed_ggt)
    .Inputs({"Env", paddle::Vec("Params"), "A", "Cache"})
    .Outputs({"GGT"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedGgt))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedGgtShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedGgtDtype));

PD_BUILD_OP(se_a_embed_tape)
    .Inputs({"Env", paddle::Vec("Params")})
    .Outputs({"T", "Cache", "Tape"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedTape));

PD_BUILD_OP(se_a_embed_pgrad)
    .Inputs({"Env", paddle::Vec("Params"), "TBar", "GT", "A", "Tape"})
    .Outputs({"PGrad"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedPgrad))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedPgradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedPgradDtype));
