// Paddle binding of embedding.h: se_a_embed(Env, Params) -> T, with a gradient wrt Env.
// Env: nat x nnei x 4 (normalised environment of atoms of one centre type);
// Params: for each neighbour type t, for each layer: W (n_in x n_out), b (n_out) and, when
// `timestep` and the layer has a skip connection, idt (n_out); `nlayer` layers per net.
// T: nat x ng x 4.
#include <vector>

#include "embedding.h"
#include "paddle/extension.h"

namespace {

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
  dpp::se_a_embed_forward<T>(env.data<T>(), env.shape()[0], sel, nets, ng, width, out->data<T>());
}

template <typename T>
void backward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params, const paddle::Tensor& gT,
              const std::vector<int>& sel, int nlayer, bool timestep, paddle::Tensor* genv) {
  int ng, width;
  auto nets = make_nets<T>(params, int(sel.size()), nlayer, timestep, &ng, &width);
  *genv = paddle::empty_like(env);
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
