// Paddle bindings of embedding.h (inference):
//   se_a_embed(Env, Params; sel, nlayer, timestep) -> T, with a gradient wrt Env;
//   se_a_embed_cached(Env, Params; ...) -> T, Cache: the same, keeping G and dG/ds for the gradient.
// Env: nat x nnei x 4 (normalised environment of atoms of one centre type); Params: see
// embedding_op.h; T: nat x ng x 4.
#include <cstdlib>
#include <vector>

#include "binding.h"
#include "embedding.h"
#include "embedding_op.h"
#include "threads.h"

namespace {

template <typename T>
void forward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const std::vector<int>& sel,
             int nlayer, bool timestep, paddle::Tensor* out) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  *out = paddle::empty({env.shape()[0], ng, 4}, env.dtype(), env.place());
  dpp::KernelThreads threads(env.shape()[0], dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_forward<T>(env.data<T>(), env.shape()[0], sel, nets, ng, width, out->data<T>());
}

template <typename T>
void backward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& gT,
              const std::vector<int>& sel, int nlayer, bool timestep, paddle::Tensor* genv) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  *genv = paddle::empty_like(env);
  dpp::KernelThreads threads(env.shape()[0], dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_backward<T>(env.data<T>(), gT.data<T>(), env.shape()[0], sel, nets, ng, width, genv->data<T>());
}

}  // namespace

// Output shape for static graphs: nat x ng x 4, ng = width of the first net's last layer.
std::vector<std::vector<int64_t>> SeAEmbedShape(const std::vector<int64_t>& env,
                                                const std::vector<std::vector<int64_t>>& params,
                                                const std::vector<int>& sel, int nlayer, bool timestep) {
  size_t idx = 0;
  int64_t ng = 0;
  for (int l = 0; l < dpp_op::layer_count(nlayer) && idx < params.size(); ++l) {
    const auto& w = params[idx];
    idx += 2;
    ng = w.size() == 2 ? w[1] : -1;
    if (timestep && w.size() == 2 && (w[1] == w[0] || w[1] == 2 * w[0])) ++idx;
  }
  return {{env[0], ng, 4}};
}

std::vector<paddle::DataType> SeAEmbedDtype(const paddle::DataType& env, const std::vector<paddle::DataType>& params) {
  return {env};
}

std::vector<paddle::Tensor> SeAEmbedForward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                            const std::vector<int>& sel, int nlayer, bool timestep) {
  dpp_op::check_env(env, sel);
  paddle::Tensor out;
  if (env.dtype() == paddle::DataType::FLOAT64) forward<double>(env, params, sel, nlayer, timestep, &out);
  else if (env.dtype() == paddle::DataType::FLOAT32) forward<float>(env, params, sel, nlayer, timestep, &out);
  else PD_THROW("se_a_embed: only float32 and float64 are supported");
  return {out};
}

std::vector<paddle::Tensor> SeAEmbedBackward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                             const paddle::Tensor& gT, const std::vector<int>& sel, int nlayer,
                                             bool timestep) {
  paddle::Tensor genv;
  if (env.dtype() == paddle::DataType::FLOAT64) backward<double>(env, params, gT, sel, nlayer, timestep, &genv);
  else backward<float>(env, params, gT, sel, nlayer, timestep, &genv);
  return {genv};
}

PD_BUILD_OP(se_a_embed)
    .Inputs({"Env", paddle::Vec("Params")})
    .Outputs({"T"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedDtype));

PD_BUILD_GRAD_OP(se_a_embed)
    .Inputs({"Env", paddle::Vec("Params"), paddle::Grad("T")})
    .Outputs({paddle::Grad("Env")})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedBackward));

// ---------------------------------------------------------------- evaluation with a cache
// se_a_embed_cached(Env, Params) -> T, Cache: se_a_embed that also keeps G and dG/ds of the
// rows it evaluates (nat x nnei x 2 ldc), so that the gradient (forces) is a contraction only:
// about a third less work per force call. Above DEEPMD_PADDLE_EMBED_CACHE_MB (default 512) the
// cache is empty and the gradient evaluates the nets again, so memory stays O(threads) for
// large systems. se_a_embed stays as it is for models frozen before this operator existed.
namespace {

int64_t embed_cache_budget() {
  const char* env = std::getenv("DEEPMD_PADDLE_EMBED_CACHE_MB");
  const double mb = env ? std::atof(env) : 512.0;
  return int64_t(mb * 1024 * 1024);
}

template <typename T>
std::vector<paddle::Tensor> forward_cached(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                           const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const int64_t nat = env.shape()[0], nnei = env.shape()[1];
  const int ldc = dpp_op::cache_ld(ng);
  const bool keep = nat * nnei * 2 * ldc * int64_t(sizeof(T)) <= embed_cache_budget();
  auto out = paddle::empty({nat, ng, 4}, env.dtype(), env.place());
  auto cache = paddle::empty({keep ? nat : 0, nnei, 2 * ldc}, env.dtype(), env.place());
  dpp::KernelThreads threads(nat, dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_forward<T>(env.data<T>(), nat, sel, nets, ng, width, out.data<T>(), keep ? cache.data<T>() : nullptr,
                             ldc);
  return {out, cache};
}

template <typename T>
paddle::Tensor backward_cached(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                               const paddle::Tensor& cache, const paddle::Tensor& gT, const std::vector<int>& sel,
                               int nlayer, bool timestep) {
  int ng, width;
  auto nets = dpp_op::make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const bool cached = cache.numel() > 0;
  PD_CHECK(!cached || (cache.shape()[0] == env.shape()[0] && cache.shape()[2] == 2 * dpp_op::cache_ld(ng)),
           "se_a_embed_cached: the cache does not belong to this Env");
  auto genv = paddle::empty_like(env);
  dpp::KernelThreads threads(env.shape()[0], dpp_op::kEmbedSerialAtoms);
  dpp::se_a_embed_backward<T>(env.data<T>(), gT.data<T>(), env.shape()[0], sel, nets, ng, width, genv.data<T>(),
                              cached ? cache.data<T>() : nullptr, dpp_op::cache_ld(ng));
  return genv;
}

}  // namespace

std::vector<paddle::Tensor> SeAEmbedCachedForward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                                  const std::vector<int>& sel, int nlayer, bool timestep) {
  dpp_op::check_env(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64) return forward_cached<double>(env, params, sel, nlayer, timestep);
  if (env.dtype() == paddle::DataType::FLOAT32) return forward_cached<float>(env, params, sel, nlayer, timestep);
  PD_THROW("se_a_embed_cached: only float32 and float64 are supported");
}

std::vector<paddle::Tensor> SeAEmbedCachedBackward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                                   const paddle::Tensor& cache, const paddle::Tensor& gT,
                                                   const std::vector<int>& sel, int nlayer, bool timestep) {
  if (env.dtype() == paddle::DataType::FLOAT64)
    return {backward_cached<double>(env, params, cache, gT, sel, nlayer, timestep)};
  return {backward_cached<float>(env, params, cache, gT, sel, nlayer, timestep)};
}

std::vector<std::vector<int64_t>> SeAEmbedCachedShape(const std::vector<int64_t>& env,
                                                      const std::vector<std::vector<int64_t>>& params,
                                                      const std::vector<int>& sel, int nlayer, bool timestep) {
  auto t = SeAEmbedShape(env, params, sel, nlayer, timestep);
  return {t[0], {-1, env[1], -1}};
}

std::vector<paddle::DataType> SeAEmbedCachedDtype(const paddle::DataType& env,
                                                  const std::vector<paddle::DataType>& params) {
  return {env, env};
}

PD_BUILD_OP(se_a_embed_cached)
    .Inputs({"Env", paddle::Vec("Params")})
    .Outputs({"T", "Cache"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedCachedForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedCachedShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedCachedDtype));

PD_BUILD_GRAD_OP(se_a_embed_cached)
    .Inputs({"Env", paddle::Vec("Params"), "Cache", paddle::Grad("T")})
    .Outputs({paddle::Grad("Env")})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedCachedBackward));
