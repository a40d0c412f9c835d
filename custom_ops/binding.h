// The Paddle side of the bindings (*_op.cc include this first, never paddle/extension.h), and helpers
// they share. The kernels never include this file.
#pragma once

#include <locale>
#include <sstream>
#include <string>

// The operators are registered through Paddle's operator registry, not a Python module, so the
// bindings need none of pybind11: leaving out paddle/utils/pybind.h halves the compile time of
// each binding (about 6 s instead of 12).
#ifndef PADDLE_NO_PYTHON
#define PADDLE_NO_PYTHON
#endif
#include "paddle/extension.h"

namespace dpp_op {

// A cutoff attribute: Python's repr of a double, which round-trips exactly (Paddle 3.3's PIR
// backward rejects `double` custom attributes, and `float` would round them).
inline double parse_double(const std::string& text, const char* name) {
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  double v = 0.0;
  in >> v;
  PD_CHECK(!in.fail(), "deepmd_paddle custom op: attribute ", name, " = '", text, "' is not a number");
  return v;
}

inline void check_cpu(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), "deepmd_paddle custom op: ", name, " must be on the CPU");
}

}  // namespace dpp_op
