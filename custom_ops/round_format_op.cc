// Paddle binding of round_format.h: deepmd_round_delta(X, fmt) = round(X) - X, fmt 0 bfloat16,
// 1 float16. No gradient: the caller adds the result to X as a constant (straight-through rounding,
// deepmd_paddle/kernels/rounding.py).
#include <vector>

#include "binding.h"
#include "round_format.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialElements = 32768;

dpp::RoundFormat format_of(int fmt) {
  PD_CHECK(fmt == 0 || fmt == 1, "deepmd_round_delta: fmt must be 0 (bfloat16) or 1 (float16), got ", fmt);
  return fmt == 0 ? dpp::RoundFormat{8, -126, 3.3895313892515355e38} : dpp::RoundFormat{11, -14, 65504.0};
}

}  // namespace

std::vector<paddle::Tensor> RoundDeltaForward(const paddle::Tensor& x, int fmt) {
  dpp_op::check_cpu(x, "X");
  const dpp::RoundFormat f = format_of(fmt);
  auto d = paddle::empty_like(x);
  dpp::KernelThreads threads(x.numel(), kSerialElements);
  if (x.dtype() == paddle::DataType::FLOAT64) dpp::round_delta<double>(x.data<double>(), d.data<double>(), x.numel(), f);
  else if (x.dtype() == paddle::DataType::FLOAT32) dpp::round_delta<float>(x.data<float>(), d.data<float>(), x.numel(), f);
  else PD_THROW("deepmd_round_delta: only float32 and float64 are supported");
  return {d};
}

std::vector<std::vector<int64_t>> RoundDeltaShape(const std::vector<int64_t>& x, int fmt) { return {x}; }
std::vector<paddle::DataType> RoundDeltaDtype(const paddle::DataType& x) { return {x}; }

PD_BUILD_OP(deepmd_round_delta)
    .Inputs({"X"})
    .Outputs({"Delta"})
    .Attrs({"fmt: int"})
    .SetKernelFn(PD_KERNEL(RoundDeltaForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RoundDeltaShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoundDeltaDtype));
