// Paddle binding of descriptor.h:
//   se_a_descriptor(T; axis) -> D: D[i, g, a] = sum_c T[i, g, c] T[i, a, c], a < axis (nat x ng x axis),
// with gradient and double gradient (along Grad(D) and T). T: float64 or float32, nat x ng x 4.
#include <vector>

#include "binding.h"
#include "descriptor.h"
#include "threads.h"

namespace {

constexpr int64_t kSerialSlots = 4096;  // below this many atoms x 16 a call runs on one thread

void check_t(const paddle::Tensor& t, int axis) {
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT64 || t.dtype() == paddle::DataType::FLOAT32,
           "se_a_descriptor: T must be float64 or float32");
  PD_CHECK(t.shape().size() == 3 && t.shape()[2] == 4 && axis >= 1 && axis <= t.shape()[1],
           "se_a_descriptor: T must be nat x ng x 4 with 1 <= axis <= ng");
}

}  // namespace

std::vector<paddle::Tensor> DescriptorForward(const paddle::Tensor& t, int axis) {
  check_t(t, axis);
  const int64_t nat = t.shape()[0];
  const int ng = int(t.shape()[1]);
  auto d = paddle::empty({nat, ng, axis}, t.dtype(), t.place());
  dpp::KernelThreads threads(nat * 16, kSerialSlots);
  if (t.dtype() == paddle::DataType::FLOAT64) dpp::descriptor_forward(t.data<double>(), nat, ng, axis, d.data<double>());
  else dpp::descriptor_forward(t.data<float>(), nat, ng, axis, d.data<float>());
  return {d};
}

std::vector<paddle::Tensor> DescriptorBackward(const paddle::Tensor& t, const paddle::Tensor& gd, int axis) {
  check_t(t, axis);
  const int64_t nat = t.shape()[0];
  const int ng = int(t.shape()[1]);
  PD_CHECK(gd.numel() == nat * ng * axis, "se_a_descriptor_grad: Grad(D) must be nat x ng x axis");
  auto gt = paddle::empty_like(t);
  dpp::KernelThreads threads(nat * 16, kSerialSlots);
  PD_CHECK(gd.dtype() == t.dtype(), "se_a_descriptor_grad: Grad(D) must have T's dtype");
  if (t.dtype() == paddle::DataType::FLOAT64)
    dpp::descriptor_backward(t.data<double>(), gd.data<double>(), nat, ng, axis, gt.data<double>());
  else dpp::descriptor_backward(t.data<float>(), gd.data<float>(), nat, ng, axis, gt.data<float>());
  return {gt};
}

std::vector<paddle::Tensor> DescriptorDoubleBackward(const paddle::Tensor& t, const paddle::Tensor& gd,
                                                     const paddle::Tensor& ggt, int axis) {
  check_t(t, axis);
  const int64_t nat = t.shape()[0];
  const int ng = int(t.shape()[1]);
  auto ggd = paddle::empty_like(gd);
  auto gt2 = paddle::empty_like(t);
  dpp::KernelThreads threads(nat * 16, kSerialSlots);
  PD_CHECK(gd.dtype() == t.dtype() && ggt.dtype() == t.dtype(), "se_a_descriptor_grad_grad: inputs must have T's dtype");
  if (t.dtype() == paddle::DataType::FLOAT64) {
    dpp::descriptor_double_backward(t.data<double>(), ggt.data<double>(), nat, ng, axis, ggd.data<double>());
    dpp::descriptor_backward(ggt.data<double>(), gd.data<double>(), nat, ng, axis, gt2.data<double>());
  } else {
    dpp::descriptor_double_backward(t.data<float>(), ggt.data<float>(), nat, ng, axis, ggd.data<float>());
    dpp::descriptor_backward(ggt.data<float>(), gd.data<float>(), nat, ng, axis, gt2.data<float>());
  }
  return {ggd, gt2};
}

std::vector<std::vector<int64_t>> DescriptorShape(const std::vector<int64_t>& t, int axis) {
  return {{t[0], t[1], axis}};
}
std::vector<paddle::DataType> DescriptorDtype(const paddle::DataType& t) { return {t}; }
std::vector<std::vector<int64_t>> DescriptorGradShape(const std::vector<int64_t>& t, const std::vector<int64_t>& gd,
                                                      int axis) {
  return {t};
}
std::vector<paddle::DataType> DescriptorGradDtype(const paddle::DataType& t, const paddle::DataType& gd) { return {t}; }
std::vector<std::vector<int64_t>> DescriptorGradGradShape(const std::vector<int64_t>& t,
                                                          const std::vector<int64_t>& gd,
                                                          const std::vector<int64_t>& ggt, int axis) {
  return {gd, t};
}
std::vector<paddle::DataType> DescriptorGradGradDtype(const paddle::DataType& t, const paddle::DataType& gd,
                                                      const paddle::DataType& ggt) {
  return {t, t};
}

PD_BUILD_OP(se_a_descriptor)
    .Inputs({"T"})
    .Outputs({"D"})
    .Attrs({"axis: int"})
    .SetKernelFn(PD_KERNEL(DescriptorForward))
    .SetInferShapeFn(PD_INFER_SHAPE(DescriptorShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DescriptorDtype));

PD_BUILD_GRAD_OP(se_a_descriptor)
    .Inputs({"T", paddle::Grad("D")})
    .Outputs({paddle::Grad("T")})
    .Attrs({"axis: int"})
    .SetKernelFn(PD_KERNEL(DescriptorBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(DescriptorGradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DescriptorGradDtype));

PD_BUILD_DOUBLE_GRAD_OP(se_a_descriptor)
    .Inputs({"T", paddle::Grad("D"), paddle::Grad(paddle::Grad("T"))})
    .Outputs({paddle::Grad(paddle::Grad("D")), paddle::Grad("T")})
    .Attrs({"axis: int"})
    .SetKernelFn(PD_KERNEL(DescriptorDoubleBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(DescriptorGradGradShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DescriptorGradGradDtype));
