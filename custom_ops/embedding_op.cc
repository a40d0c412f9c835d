// Paddle binding of embedding.h: se_a_embed(Env, Params) -> T, with a gradient wrt Env.
// Env: nat x nnei x 4 (normalised environment of atoms of one centre type);
// Params: for each neighbour type t, for each layer: W (n_in x n_out), b (n_out) and, when
// `timestep` and the layer has a skip connection, idt (n_out); `nlayer` layers per net.
// T: nat x ng x 4.
#include <vector>

#include "embedding.h"
#include "embedding_train.h"
#include "paddle/extension.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialAtoms = 8;  // below this many centre atoms a call runs on one thread

template <typename T>
std::vector<dpp::EmbedNet<T>> make_nets(const std::vector<paddle::Tensor>& params, int ntypes, int nlayer,
                                        bool timestep, int* ng, int* width) {
  // with `timestep`, a layer has idt exactly when it has a skip connection (DeePMD-kit's rule)
  std::vector<dpp::EmbedNet<T>> nets(ntypes);
  *width = 1;
  size_t idx = 0;
  for (int t = 0; t < ntypes; ++t) {
    for (int l = 0; l < nlayer; ++l) {
      PD_CHECK(idx + 2 <= params.size(), "se_a_embed: too few parameter tensors");
      const auto& w = params[idx];
      const auto& b = params[idx + 1];
      idx += 2;
      PD_CHECK(w.shape().size() == 2, "se_a_embed: weights must be 2-D");
      dpp::EmbedLayer<T> L;
      L.w = w.data<T>();
      L.b = b.data<T>();
      L.n_in = int(w.shape()[0]);
      L.n_out = int(w.shape()[1]);
      L.idt = nullptr;
      if (timestep && (L.n_out == L.n_in || L.n_out == 2 * L.n_in)) {
        PD_CHECK(idx < params.size(), "se_a_embed: missing idt");
        L.idt = params[idx++].data<T>();
      }
      PD_CHECK(b.numel() == L.n_out, "se_a_embed: bias length must equal the layer width");
      *width = std::max(*width, L.n_out);
      nets[t].push_back(L);
    }
    PD_CHECK(nets[t].front().n_in == 1, "se_a_embed: an embedding net takes one input");
    if (t == 0) *ng = nets[t].back().n_out;
    PD_CHECK(nets[t].back().n_out == *ng, "se_a_embed: all nets must end with the same width");
  }
  PD_CHECK(idx == params.size(), "se_a_embed: expected ", idx, " parameter tensors, got ", params.size());
  return nets;
}

template <typename T>
void forward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const std::vector<int>& sel,
             int nlayer, bool timestep, paddle::Tensor* out) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  *out = paddle::empty({env.shape()[0], ng, 4}, env.dtype(), env.place());
  dpp::KernelThreads threads(env.shape()[0], kSerialAtoms);
  dpp::se_a_embed_forward<T>(env.data<T>(), env.shape()[0], sel, nets, ng, width, out->data<T>());
}

template <typename T>
void backward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& gT,
              const std::vector<int>& sel, int nlayer, bool timestep, paddle::Tensor* genv) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  *genv = paddle::empty_like(env);
  dpp::KernelThreads threads(env.shape()[0], kSerialAtoms);
  dpp::se_a_embed_backward<T>(env.data<T>(), gT.data<T>(), env.shape()[0], sel, nets, ng, width, genv->data<T>());
}

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
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  std::vector<T> flat(total, T(0));
  paddle::Tensor first = mode == 0 ? paddle::empty_like(env) : paddle::empty_like(gT);
  dpp::KernelThreads threads(env.shape()[0], kSerialAtoms);
  dpp::se_a_embed_train_sweep<T>(mode, env.data<T>(), gT.data<T>(), ggenv ? ggenv->data<T>() : nullptr,
                                 env.shape()[0], sel, nets, ng, mode == 0 ? first.data<T>() : nullptr,
                                 mode == 1 ? first.data<T>() : nullptr, flat.data());
  auto grads = split_param_grads(flat, params);
  grads.insert(grads.begin(), first);
  return grads;
}

void check(const paddle::Tensor& env, const std::vector<int>& sel) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  PD_CHECK(env.shape().size() == 3 && env.shape()[1] == nnei && env.shape()[2] == 4,
           "se_a_embed: Env must be nat x sum(sel) x 4");
}

}  // namespace

// Output shape for static graphs: nat x ng x 4, ng = width of the first net's last layer.
std::vector<std::vector<int64_t>> SeAEmbedShape(const std::vector<int64_t>& env,
                                                const std::vector<std::vector<int64_t>>& params,
                                                const std::vector<int>& sel, int nlayer, bool timestep) {
  size_t idx = 0;
  int64_t ng = 0;
  for (int l = 0; l < nlayer && idx < params.size(); ++l) {
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
  check(env, sel);
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
//   se_a_embed_pgrad(Env, Params, TBar, GT, A) -> the weight gradients, flat (net order,
//                                                 W b idt per layer); TBar or A may be empty.
namespace {

template <typename T>
const T* data_or_null(const paddle::Tensor& x) {
  return x.numel() > 0 ? x.data<T>() : nullptr;
}

inline int cache_ld(int ng) { return (ng + 15) / 16 * 16; }  // >= the padded ng of either precision

template <typename T>
paddle::Tensor vjp_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& gT,
                        const paddle::Tensor& cache, const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const bool cached = cache.numel() > 0;
  PD_CHECK(!cached || (cache.shape().size() == 3 && cache.shape()[0] == env.shape()[0] &&
                       cache.shape()[1] == env.shape()[1] && cache.shape()[2] == 2 * cache_ld(ng)),
           "se_a_embed_vjp: Cache must come from se_a_embed_cached on the same Env");
  auto genv = paddle::empty_like(env);
  dpp::KernelThreads threads(env.shape()[0], kSerialAtoms);
  dpp::se_a_embed_backward<T>(env.data<T>(), gT.data<T>(), env.shape()[0], sel, nets, ng, width, genv.data<T>(),
                              cached ? cache.data<T>() : nullptr, cache_ld(ng));
  return genv;
}

template <typename T>
paddle::Tensor ggt_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& a,
                        const paddle::Tensor& cache, const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  PD_CHECK(a.shape() == env.shape(), "se_a_embed_ggt: A must have the shape of Env");
  auto out = paddle::empty({env.shape()[0], ng, 4}, env.dtype(), env.place());
  dpp::KernelThreads threads(env.shape()[0], kSerialAtoms);
  const bool cached = cache.numel() > 0;
  PD_CHECK(!cached || (cache.shape().size() == 3 && cache.shape()[0] == env.shape()[0] &&
                       cache.shape()[1] == env.shape()[1] && cache.shape()[2] == 2 * cache_ld(ng)),
           "se_a_embed_ggt: Cache must come from se_a_embed_cached on the same Env");
  dpp::se_a_embed_ggt<T>(env.data<T>(), a.data<T>(), env.shape()[0], sel, nets, ng, width, out.data<T>(),
                         cached ? cache.data<T>() : nullptr, cache_ld(ng));
  return out;
}

template <typename T>
paddle::Tensor pgrad_impl(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                          const paddle::Tensor& tbar, const paddle::Tensor& gT, const paddle::Tensor& a,
                          const std::vector<int>& sel, int nlayer, bool timestep) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const int64_t nat = env.shape()[0];
  PD_CHECK(tbar.numel() == 0 || tbar.numel() == nat * ng * 4, "se_a_embed_pgrad: TBar must be nat x ng x 4 or empty");
  PD_CHECK(a.numel() == 0 || (a.shape() == env.shape() && gT.numel() == nat * ng * 4),
           "se_a_embed_pgrad: A must have the shape of Env (or be empty) and GT be nat x ng x 4");
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  auto out = paddle::full({total}, 0.0, env.dtype(), env.place());
  dpp::KernelThreads threads(nat, kSerialAtoms);
  dpp::se_a_embed_param_grad<T>(env.data<T>(), data_or_null<T>(tbar), data_or_null<T>(gT), data_or_null<T>(a), nat, sel,
                                nets, ng, nullptr, nullptr, out.data<T>());
  return out;
}

}  // namespace

std::vector<paddle::Tensor> SeAEmbedVjp(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                        const paddle::Tensor& gT, const paddle::Tensor& cache,
                                        const std::vector<int>& sel, int nlayer, bool timestep) {
  check(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64) return {vjp_impl<double>(env, params, gT, cache, sel, nlayer, timestep)};
  return {vjp_impl<float>(env, params, gT, cache, sel, nlayer, timestep)};
}

std::vector<paddle::Tensor> SeAEmbedGgt(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                        const paddle::Tensor& a, const paddle::Tensor& cache,
                                        const std::vector<int>& sel, int nlayer, bool timestep) {
  check(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64)
    return {ggt_impl<double>(env, params, a, cache, sel, nlayer, timestep)};
  return {ggt_impl<float>(env, params, a, cache, sel, nlayer, timestep)};
}

std::vector<paddle::Tensor> SeAEmbedPgrad(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                          const paddle::Tensor& tbar, const paddle::Tensor& gT,
                                          const paddle::Tensor& a, const std::vector<int>& sel, int nlayer,
                                          bool timestep) {
  check(env, sel);
  if (env.dtype() == paddle::DataType::FLOAT64)
    return {pgrad_impl<double>(env, params, tbar, gT, a, sel, nlayer, timestep)};
  return {pgrad_impl<float>(env, params, tbar, gT, a, sel, nlayer, timestep)};
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
                                                     const std::vector<int64_t>& a) {
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
                                                 const paddle::DataType& a) {
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

PD_BUILD_OP(se_a_embed_pgrad)
    .Inputs({"Env", paddle::Vec("Params"), "TBar", "GT", "A"})
    .Outputs({"PGrad"})
    .Attrs({"sel: std::vector<int>", "nlayer: int", "timestep: bool"})
    .SetKernelFn(PD_KERNEL(SeAEmbedPgrad))
    .SetInferShapeFn(PD_INFER_SHAPE(SeAEmbedPgradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SeAEmbedPgradDtype));

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
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const int64_t nat = env.shape()[0], nnei = env.shape()[1];
  const int ldc = cache_ld(ng);
  const bool keep = nat * nnei * 2 * ldc * int64_t(sizeof(T)) <= embed_cache_budget();
  auto out = paddle::empty({nat, ng, 4}, env.dtype(), env.place());
  auto cache = paddle::empty({keep ? nat : 0, nnei, 2 * ldc}, env.dtype(), env.place());
  dpp::KernelThreads threads(nat, kSerialAtoms);
  dpp::se_a_embed_forward<T>(env.data<T>(), nat, sel, nets, ng, width, out.data<T>(), keep ? cache.data<T>() : nullptr,
                             ldc);
  return {out, cache};
}

template <typename T>
paddle::Tensor backward_cached(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                               const paddle::Tensor& cache, const paddle::Tensor& gT, const std::vector<int>& sel,
                               int nlayer, bool timestep) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  const bool cached = cache.numel() > 0;
  PD_CHECK(!cached || (cache.shape()[0] == env.shape()[0] && cache.shape()[2] == 2 * cache_ld(ng)),
           "se_a_embed_cached: the cache does not belong to this Env");
  auto genv = paddle::empty_like(env);
  dpp::KernelThreads threads(env.shape()[0], kSerialAtoms);
  dpp::se_a_embed_backward<T>(env.data<T>(), gT.data<T>(), env.shape()[0], sel, nets, ng, width, genv.data<T>(),
                              cached ? cache.data<T>() : nullptr, cache_ld(ng));
  return genv;
}

}  // namespace

std::vector<paddle::Tensor> SeAEmbedCachedForward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                                  const std::vector<int>& sel, int nlayer, bool timestep) {
  check(env, sel);
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
