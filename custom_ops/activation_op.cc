// Paddle binding of activation.h: bias_tanh(Z, B) = tanh(Z + B) with gradient and double
// gradient. Z is [..., cols] (any leading shape), B is [cols].
#include <vector>

#include "binding.h"
#include "activation.h"
#include "threads.h"

namespace {

// Below this many elements a call runs on one thread (the kernels' own OpenMP `if` clauses
// use the same bound).
constexpr int64_t kSerialElements = 32768;

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void check_bias(const paddle::Tensor& z, const paddle::Tensor& b) {
  PD_CHECK(b.shape().size() == 1, "bias_tanh: B must be 1-D");
  PD_CHECK(z.shape().back() == b.shape()[0], "bias_tanh: last dimension of Z must equal the length of B");
  PD_CHECK(z.dtype() == b.dtype(), "bias_tanh: Z and B must have the same dtype");
}

template <typename T>
void fwd(const paddle::Tensor& z, const paddle::Tensor& b, paddle::Tensor& y) {
  const int64_t cols = b.shape()[0];
  dpp::KernelThreads threads(z.numel(), kSerialElements);
  dpp::bias_tanh_forward<T>(z.data<T>(), b.data<T>(), y.data<T>(), z.numel() / cols, cols);
}

template <typename T>
void bwd(const paddle::Tensor& y, const paddle::Tensor& gy, paddle::Tensor& gz, paddle::Tensor& gb) {
  const int64_t cols = gb.shape()[0];
  dpp::KernelThreads threads(y.numel(), kSerialElements);
  const int nt = num_threads();
  std::vector<T> scratch(size_t(nt) * cols);
  dpp::bias_tanh_backward<T>(y.data<T>(), gy.data<T>(), gz.data<T>(), gb.data<T>(), y.numel() / cols, cols,
                             scratch.data(), nt);
}

template <typename T>
void dbwd(const paddle::Tensor& y, const paddle::Tensor& gy, const paddle::Tensor* ggz, const paddle::Tensor* ggb,
          paddle::Tensor& gg_y, paddle::Tensor& g_y) {
  const int64_t cols = y.shape().back();
  dpp::KernelThreads threads(y.numel(), kSerialElements);
  dpp::bias_tanh_double_backward<T>(y.data<T>(), gy.data<T>(), ggz ? ggz->data<T>() : nullptr,
                                    ggb ? ggb->data<T>() : nullptr, gg_y.data<T>(), g_y.data<T>(),
                                    y.numel() / cols, cols);
}

}  // namespace

std::vector<paddle::Tensor> BiasTanhForward(const paddle::Tensor& z, const paddle::Tensor& b) {
  check_bias(z, b);
  auto y = paddle::empty_like(z);
  if (z.dtype() == paddle::DataType::FLOAT64) fwd<double>(z, b, y);
  else if (z.dtype() == paddle::DataType::FLOAT32) fwd<float>(z, b, y);
  else PD_THROW("bias_tanh: only float32 and float64 are supported");
  return {y};
}

std::vector<paddle::Tensor> BiasTanhBackward(const paddle::Tensor& y, const paddle::Tensor& gy) {
  auto gz = paddle::empty_like(y);
  auto gb = paddle::empty({y.shape().back()}, y.dtype(), y.place());
  if (y.dtype() == paddle::DataType::FLOAT64) bwd<double>(y, gy, gz, gb);
  else bwd<float>(y, gy, gz, gb);
  return {gz, gb};
}

std::vector<paddle::Tensor> BiasTanhDoubleBackward(const paddle::Tensor& y, const paddle::Tensor& gy,
                                                   const paddle::optional<paddle::Tensor>& ggz,
                                                   const paddle::optional<paddle::Tensor>& ggb) {
  auto gg_y = paddle::empty_like(y);
  auto g_y = paddle::empty_like(y);
  const paddle::Tensor* pz = (ggz && ggz->initialized()) ? ggz.get_ptr() : nullptr;
  const paddle::Tensor* pb = (ggb && ggb->initialized()) ? ggb.get_ptr() : nullptr;
  if (y.dtype() == paddle::DataType::FLOAT64) dbwd<double>(y, gy, pz, pb, gg_y, g_y);
  else dbwd<float>(y, gy, pz, pb, gg_y, g_y);
  return {g_y, gg_y};
}

// Static graphs need these (Paddle aborts tracing an operator with several inputs without them).
std::vector<std::vector<int64_t>> BiasTanhShape(const std::vector<int64_t>& z, const std::vector<int64_t>& b) {
  return {z};
}
std::vector<paddle::DataType> BiasTanhDtype(const paddle::DataType& z, const paddle::DataType& b) { return {z}; }

PD_BUILD_OP(bias_tanh)
    .Inputs({"Z", "B"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(BiasTanhForward))
    .SetInferShapeFn(PD_INFER_SHAPE(BiasTanhShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(BiasTanhDtype));

std::vector<std::vector<int64_t>> BiasTanhGradShape(const std::vector<int64_t>& out, const std::vector<int64_t>& gout) {
  return {out, {out.back()}};
}
std::vector<paddle::DataType> BiasTanhGradDtype(const paddle::DataType& out, const paddle::DataType& gout) {
  return {out, out};
}

PD_BUILD_GRAD_OP(bias_tanh)
    .Inputs({"Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("Z"), paddle::Grad("B")})
    .SetKernelFn(PD_KERNEL(BiasTanhBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(BiasTanhGradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(BiasTanhGradDtype));

PD_BUILD_DOUBLE_GRAD_OP(bias_tanh)
    .Inputs({"Out", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("Z"))),
             paddle::Optional(paddle::Grad(paddle::Grad("B")))})
    .Outputs({paddle::Grad("Out"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(BiasTanhDoubleBackward));
