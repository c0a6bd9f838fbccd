// The precision= argument of the dense kernels: "fp32" (the default) or "bf16"
// (fastdl/precision.h). Anything else is a TypeError or ValueError naming the argument.
#pragma once
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/checks.h"
#include "fastdl/precision.h"

namespace fastdl::bind {

inline Precision precision_arg(py::handle h) {
  if (!py::isinstance<py::str>(h))
    throw py::type_error("precision: expected 'fp32' or 'bf16', got " + type_name(h));
  return parse_precision(h.cast<std::string>().c_str());  // std::invalid_argument: ValueError
}

}  // namespace fastdl::bind
