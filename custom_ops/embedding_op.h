// Helpers shared by the embedding bindings (embedding_op.cc, embedding_train_op.cc): the flat
// parameter list of the operators as dpp::EmbedNet views, and the checks they share.
// Params: for each neighbour type t, for each layer: W (n_in x n_out), b (n_out) and, when
// `timestep` and the layer has a skip connection, idt (n_out); `nlayer` layers per net.
#pragma once
#include <algorithm>
#include <vector>

#include "binding.h"
#include "embed_net.h"

namespace dpp_op {

constexpr int64_t kEmbedSerialAtoms = 8;  // below this many centre atoms a call runs on one thread

// Row length of se_a_embed_cached's cache: >= the padded ng of either precision.
inline int cache_ld(int ng) { return (ng + 15) / 16 * 16; }

// The operators' `nlayer` attribute: the layer count per net, plus 256 x the mixed-precision
// rounding mode (round_prec.h: 1 bfloat16, 2 float16, 3 float32) when the nets compute in a narrower
// precision. (A new attribute would change the operators' signature, and programs frozen
// before could no longer be loaded.)
inline int layer_count(int nlayer) { return nlayer & 255; }
inline int round_mode(int nlayer) { return nlayer >> 8; }

template <typename T>
std::vector<dpp::EmbedNet<T>> make_nets(const std::vector<paddle::Tensor>& params, int ntypes, int nlayer_code,
                                        bool timestep, int* ng, int* width) {
  // with `timestep`, a layer has idt exactly when it has a skip connection (DeePMD-kit's rule)
  const int nlayer = layer_count(nlayer_code), round = round_mode(nlayer_code);
  PD_CHECK(round >= dpp::kRoundNone && round <= dpp::kRoundF32, "se_a_embed: unknown rounding mode ", round);
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
      L.round = round;
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

inline void check_env(const paddle::Tensor& env, const std::vector<int>& sel) {
  int nnei = 0;
  for (int s : sel) nnei += s;
  PD_CHECK(env.shape().size() == 3 && env.shape()[1] == nnei && env.shape()[2] == 4,
           "se_a_embed: Env must be nat x sum(sel) x 4");
}

}  // namespace dpp_op

// Defined in embedding_op.cc; se_a_embed_train (embedding_train_op.cc) shares them.
std::vector<std::vector<int64_t>> SeAEmbedShape(const std::vector<int64_t>& env,
                                                const std::vector<std::vector<int64_t>>& params,
                                                const std::vector<int>& sel, int nlayer, bool timestep);
std::vector<paddle::DataType> SeAEmbedDtype(const paddle::DataType& env, const std::vector<paddle::DataType>& params);
std::vector<paddle::Tensor> SeAEmbedForward(const paddle::Tensor& env, const std::vector<paddle::Tensor>& params,
                                            const std::vector<int>& sel, int nlayer, bool timestep);
