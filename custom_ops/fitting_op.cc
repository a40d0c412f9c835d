// Paddle binding of fitting.h: the energy fitting net of a training step in one operator.
//   deepmd_fitting_ener(X, Params; timestep) -> E, GX, Saved
// X: n x nin (float32 or float64); Params: per hidden layer W (ni x no), b (no), idt (no) when
// timestep[l] is 1; then the output layer's W (nL x 1) and b (1). E: n x 1, GX = dE/dX (n x nin),
// Saved: what the gradient needs (per hidden layer: its output, t, and the adjoint of its output
// in the dE/dX sweep). The gradient takes Grad(E) and Grad(GX), both optional, and gives
// Grad(X) and Grad(Params): the gradient of sum Ebar E + <GXbar, GX> (fitting.h). No double
// gradient: the training step differentiates the loss once (train/fused_step.py). The GEMMs are
// Paddle's matmul (its BLAS and thread count); the rest runs here without Paddle operators.
#include <cstring>
#include <vector>

#include "activation.h"
#include "binding.h"
#include "fitting.h"

namespace {

template <typename T>
struct Layer {
  const T *w, *b, *idt;
  int ni, no;
  paddle::Tensor W;
};

// blob: a view of `rows x cols` values at p (no copy), for matmul's inputs
template <typename T>
paddle::Tensor view(const T* p, int64_t rows, int64_t cols, const paddle::Tensor& like) {
  return paddle::from_blob(const_cast<T*>(p), {rows, cols}, like.dtype(), phi::DataLayout::NCHW, like.place());
}

template <typename T>
std::vector<Layer<T>> layers(const paddle::Tensor& x, const std::vector<paddle::Tensor>& params,
                             const std::vector<int>& timestep, Layer<T>* out) {
  std::vector<Layer<T>> hidden;
  for (const auto& p : params) PD_CHECK(p.dtype() == x.dtype(), "deepmd_fitting_ener: parameters must have X's dtype");
  PD_CHECK(!timestep.empty(), "deepmd_fitting_ener: at least one hidden layer");
  std::size_t k = 0;
  int width = int(x.shape()[1]);
  for (std::size_t l = 0; l < timestep.size(); ++l) {
    PD_CHECK(k + 2 <= params.size(), "deepmd_fitting_ener: too few parameters for ", timestep.size(), " hidden layers");
    const auto& W = params[k];
    const auto& b = params[k + 1];
    PD_CHECK(W.shape().size() == 2 && W.shape()[0] == width, "deepmd_fitting_ener: layer ", l, "'s W must have ", width,
             " rows");
    const int no = int(W.shape()[1]);
    PD_CHECK(b.numel() == no, "deepmd_fitting_ener: layer ", l, "'s b must have ", no, " values");
    const T* idt = nullptr;
    k += 2;
    if (timestep[l]) {
      PD_CHECK(k < params.size() && params[k].numel() == no, "deepmd_fitting_ener: layer ", l, "'s idt must have ", no,
               " values");
      idt = params[k++].data<T>();
    }
    hidden.push_back({W.data<T>(), b.data<T>(), idt, width, no, W});
    width = no;
  }
  PD_CHECK(k + 2 == params.size(), "deepmd_fitting_ener: the output layer's W and b must come last");
  const auto& W = params[k];
  PD_CHECK(W.shape().size() == 2 && W.shape()[0] == width && W.shape()[1] == 1 && params[k + 1].numel() == 1,
           "deepmd_fitting_ener: the output layer must be ", width, " x 1 with one bias");
  *out = {W.data<T>(), params[k + 1].data<T>(), nullptr, width, 1, W};
  return hidden;
}

// Saved: per hidden layer [x' | t | ybar], n x no each; the layers' offsets, then the total size
template <typename T>
std::vector<int64_t> saved_offsets(const std::vector<Layer<T>>& h, int64_t n) {
  std::vector<int64_t> offs{0};
  for (const auto& L : h) offs.push_back(offs.back() + 3 * n * L.no);
  return offs;
}

template <typename T>
std::vector<paddle::Tensor> forward(const paddle::Tensor& x, const std::vector<paddle::Tensor>& params,
                                    const std::vector<int>& timestep) {
  Layer<T> top;
  const auto h = layers<T>(x, params, timestep, &top);
  const int64_t n = x.shape()[0];
  const std::vector<int64_t> offs = saved_offsets(h, n);
  paddle::Tensor saved = paddle::empty({offs.back()}, x.dtype(), x.place());
  T* sv = saved.data<T>();
  const T* xin = x.data<T>();
  for (std::size_t l = 0; l < h.size(); ++l) {
    const auto& L = h[l];
    paddle::Tensor z = paddle::experimental::matmul(view(xin, n, L.ni, x), L.W, false, false);
    T* xn = sv + offs[l];
    T* t = xn + n * L.no;
    dpp::bias_tanh_forward<T>(z.data<T>(), L.b, t, n, L.no);
    dpp::fit_layer_out<T>(t, L.idt, xin, xn, n, L.ni, L.no);
    xin = xn;
  }
  paddle::Tensor e = paddle::experimental::matmul(view(xin, n, top.ni, x), top.W, false, false);
  T* ep = e.data<T>();
  for (int64_t r = 0; r < n; ++r) ep[r] = ep[r] + top.b[0];
  // dE/dx with seed 1: ybar of the top layer is W_o^T on every row
  paddle::Tensor gx;
  T* ybar = sv + offs[h.size() - 1] + 2 * n * h.back().no;
  for (int64_t r = 0; r < n; ++r) std::memcpy(ybar + r * top.ni, top.w, sizeof(T) * top.ni);
  for (int l = int(h.size()) - 1; l >= 0; --l) {
    const auto& L = h[l];
    const T* t = sv + offs[l] + n * L.no;
    ybar = sv + offs[l] + 2 * n * L.no;
    std::vector<T> zbar(n * L.no);
    dpp::fit_zbar<T>(ybar, t, L.idt, zbar.data(), n, L.no);
    paddle::Tensor xbar = paddle::experimental::matmul(view(zbar.data(), n, L.no, x), L.W, false, true);
    dpp::fit_add_res_t<T>(ybar, xbar.data<T>(), n, L.ni, L.no);
    if (l > 0) std::memcpy(sv + offs[l - 1] + 2 * n * h[l - 1].no, xbar.data<T>(), sizeof(T) * n * L.ni);
    else gx = xbar;
  }
  return {e, gx, saved};
}

template <typename T>
std::vector<paddle::Tensor> backward(const paddle::Tensor& x, const std::vector<paddle::Tensor>& params,
                                     const paddle::Tensor& saved, const paddle::Tensor* ebar,
                                     const paddle::Tensor* gxbar, const std::vector<int>& timestep) {
  Layer<T> top;
  const auto h = layers<T>(x, params, timestep, &top);
  const int64_t n = x.shape()[0];
  const int nl = int(h.size());
  const std::vector<int64_t> offs = saved_offsets(h, n);
  PD_CHECK(saved.numel() == offs.back(), "deepmd_fitting_ener (gradient): Saved does not match the layers");
  const T* sv = saved.data<T>();
  // X2[l] = [x_l ; xdot_l] (2n x ni): the rows of both sweeps, for one weight GEMM per layer
  std::vector<std::vector<T>> x2(nl + 1);
  for (int l = 0; l <= nl; ++l) {
    const int ni = l < nl ? h[l].ni : top.ni;
    x2[l].assign(2 * n * ni, T(0));
    const T* xl = l == 0 ? x.data<T>() : sv + offs[l - 1];
    std::memcpy(x2[l].data(), xl, sizeof(T) * n * ni);
  }
  if (gxbar) std::memcpy(x2[0].data() + n * h[0].ni, gxbar->data<T>(), sizeof(T) * n * h[0].ni);
  // tangent sweep along GXbar (zero: Phi has no <GXbar, GX> term)
  std::vector<paddle::Tensor> zdot(nl);
  std::vector<std::vector<T>> tdot(nl);
  for (int l = 0; l < nl; ++l) {
    const auto& L = h[l];
    const T* t = sv + offs[l] + n * L.no;
    const T* xdot = x2[l].data() + n * L.ni;
    tdot[l].resize(n * L.no);
    if (gxbar) {
      zdot[l] = paddle::experimental::matmul(view(xdot, n, L.ni, x), L.W, false, false);
    } else {
      zdot[l] = paddle::zeros({n, L.no}, x.dtype(), x.place());
    }
    dpp::fit_tangent<T>(t, zdot[l].data<T>(), L.idt, xdot, tdot[l].data(), x2[l + 1].data() + n * L.no, n, L.ni,
                        L.no);
  }
  // output layer
  std::vector<paddle::Tensor> grads(params.size());
  const T* eb = ebar ? ebar->data<T>() : nullptr;
  paddle::Tensor wo = paddle::empty({top.ni, 1}, x.dtype(), x.place());
  paddle::Tensor bo = paddle::empty({1}, x.dtype(), x.place());
  {
    T* g = wo.data<T>();
    const T* xl = x2[nl].data();
    const T* xd = xl + n * top.ni;
    for (int c = 0; c < top.ni; ++c) g[c] = T(0);
    T sb = T(0);
    for (int64_t r = 0; r < n; ++r) {
      const T e = eb ? eb[r] : T(0);
      sb += e;
#pragma omp simd
      for (int c = 0; c < top.ni; ++c) g[c] += e * xl[r * top.ni + c] + xd[r * top.ni + c];
    }
    bo.data<T>()[0] = sb;
  }
  grads[params.size() - 2] = wo;
  grads[params.size() - 1] = bo;
  // p: adjoint of the primal sweep's layer output; at the top Ebar W_o^T
  std::vector<T> p(n * top.ni);
  for (int64_t r = 0; r < n; ++r) {
    const T e = eb ? eb[r] : T(0);
    for (int c = 0; c < top.ni; ++c) p[r * top.ni + c] = e * top.w[c];
  }
  // parameter slots of each hidden layer in Params
  std::vector<std::size_t> slot(nl);
  for (std::size_t k = 0, l = 0; l < std::size_t(nl); ++l) {
    slot[l] = k;
    k += timestep[l] ? 3 : 2;
  }
  paddle::Tensor gx;
  for (int l = nl - 1; l >= 0; --l) {
    const auto& L = h[l];
    const T* t = sv + offs[l] + n * L.no;
    const T* ybar = sv + offs[l] + 2 * n * L.no;
    std::vector<T> z2(2 * n * L.no);
    paddle::Tensor gb = paddle::empty({L.no}, x.dtype(), x.place());
    paddle::Tensor gidt;
    if (L.idt) gidt = paddle::empty({L.no}, x.dtype(), x.place());
    dpp::fit_reverse_elementwise<T>(p.data(), ybar, t, zdot[l].data<T>(), tdot[l].data(), L.idt, z2.data(),
                                    z2.data() + n * L.no, gb.data<T>(), L.idt ? gidt.data<T>() : nullptr, n, L.no);
    paddle::Tensor gw = paddle::experimental::matmul(view(x2[l].data(), 2 * n, L.ni, x), view(z2.data(), 2 * n, L.no, x), true,
                                           false);
    paddle::Tensor pn = paddle::experimental::matmul(view(z2.data(), n, L.no, x), L.W, false, true);
    dpp::fit_add_res_t<T>(p.data(), pn.data<T>(), n, L.ni, L.no);
    grads[slot[l]] = gw;
    grads[slot[l] + 1] = gb;
    if (L.idt) grads[slot[l] + 2] = gidt;
    if (l > 0) p.assign(pn.data<T>(), pn.data<T>() + n * L.ni);
    else gx = pn;
  }
  std::vector<paddle::Tensor> out;
  out.push_back(gx);
  for (std::size_t k = 0; k < params.size(); ++k) out.push_back(grads[k]);
  return out;
}

void check_x(const paddle::Tensor& x) {
  dpp_op::check_cpu(x, "deepmd_fitting_ener: X");
  PD_CHECK(x.shape().size() == 2, "deepmd_fitting_ener: X must be rows x inputs");
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT64,
           "deepmd_fitting_ener: float32 or float64 only");
}

}  // namespace

std::vector<paddle::Tensor> FitEnergyGrad(const paddle::Tensor& x, const std::vector<paddle::Tensor>& params,
                                          const std::vector<int>& timestep) {
  check_x(x);
  return x.dtype() == paddle::DataType::FLOAT64 ? forward<double>(x, params, timestep)
                                                 : forward<float>(x, params, timestep);
}

std::vector<paddle::Tensor> FitEnergyGradBackward(const paddle::Tensor& x, const std::vector<paddle::Tensor>& params,
                                                  const paddle::Tensor& saved,
                                                  const paddle::optional<paddle::Tensor>& ebar,
                                                  const paddle::optional<paddle::Tensor>& gxbar,
                                                  const std::vector<int>& timestep) {
  check_x(x);
  const paddle::Tensor* pe = (ebar && ebar->initialized()) ? ebar.get_ptr() : nullptr;
  const paddle::Tensor* pg = (gxbar && gxbar->initialized()) ? gxbar.get_ptr() : nullptr;
  if (pe) PD_CHECK(pe->numel() == x.shape()[0] && pe->dtype() == x.dtype(), "deepmd_fitting_ener (gradient): Grad(E) shape");
  if (pg) PD_CHECK(pg->shape() == x.shape() && pg->dtype() == x.dtype(), "deepmd_fitting_ener (gradient): Grad(GX) shape");
  return x.dtype() == paddle::DataType::FLOAT64 ? backward<double>(x, params, saved, pe, pg, timestep)
                                                 : backward<float>(x, params, saved, pe, pg, timestep);
}

PD_BUILD_OP(deepmd_fitting_ener)
    .Inputs({"X", paddle::Vec("Params")})
    .Outputs({"E", "GX", "Saved"})
    .Attrs({"timestep: std::vector<int>"})
    .SetKernelFn(PD_KERNEL(FitEnergyGrad));

PD_BUILD_GRAD_OP(deepmd_fitting_ener)
    .Inputs({"X", paddle::Vec("Params"), "Saved", paddle::Optional(paddle::Grad("E")),
             paddle::Optional(paddle::Grad("GX"))})
    .Outputs({paddle::Grad("X"), paddle::Grad(paddle::Vec("Params"))})
    .Attrs({"timestep: std::vector<int>"})
    .SetKernelFn(PD_KERNEL(FitEnergyGradBackward));
