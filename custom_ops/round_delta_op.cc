// Paddle binding: deepmd_round_delta(X, mode) = round(X) - X, the rounding of round_prec.h (mode 1
// bfloat16, 2 float16), 0 where X is NaN or +-inf (X + 0 keeps them; inf - inf would be NaN). No
// gradient: the caller adds the result to X as a constant (straight-through rounding of the Paddle
// layers, deepmd_paddle/kernels/rounding.py, which also holds the plain-Paddle twin).
#include <cmath>
#include <vector>

#include "binding.h"
#include "round_prec.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialElements = 32768;

// (the branch-free rounding the fused kernels use, round_prec.h's round_v: one definition tested here
// against IEEE on edge cases; v - v is 0 exactly when v is finite)
template <typename T, int M>
void round_delta_m(const T* x, T* delta, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kSerialElements)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T r = dpp::round_v<T, M>(v);
    delta[i] = v - v == T(0) ? T(r - v) : T(0);  // exact (Sterbenz)
  }
}

template <typename T>
void round_delta(const T* x, T* delta, int64_t n, int mode) {
  if (mode == dpp::kRoundBF16) round_delta_m<T, dpp::kRoundBF16>(x, delta, n);
  else round_delta_m<T, dpp::kRoundF16>(x, delta, n);
}

}  // namespace

std::vector<paddle::Tensor> RoundDeltaForward(const paddle::Tensor& x, int mode) {
  dpp_op::check_cpu(x, "X");
  PD_CHECK(mode == dpp::kRoundBF16 || mode == dpp::kRoundF16,
           "deepmd_round_delta: mode must be 1 (bfloat16) or 2 (float16), got ", mode);
  auto d = paddle::empty_like(x);
  dpp::KernelThreads threads(x.numel(), kSerialElements);
  if (x.dtype() == paddle::DataType::FLOAT64) round_delta<double>(x.data<double>(), d.data<double>(), x.numel(), mode);
  else if (x.dtype() == paddle::DataType::FLOAT32) round_delta<float>(x.data<float>(), d.data<float>(), x.numel(), mode);
  else PD_THROW("deepmd_round_delta: only float32 and float64 are supported");
  return {d};
}

std::vector<std::vector<int64_t>> RoundDeltaShape(const std::vector<int64_t>& x, int mode) { return {x}; }
std::vector<paddle::DataType> RoundDeltaDtype(const paddle::DataType& x) { return {x}; }

PD_BUILD_OP(deepmd_round_delta)
    .Inputs({"X"})
    .Outputs({"Delta"})
    .Attrs({"mode: int"})
    .SetKernelFn(PD_KERNEL(RoundDeltaForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RoundDeltaShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoundDeltaDtype));
