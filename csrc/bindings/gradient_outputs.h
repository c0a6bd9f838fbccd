// The optional out= of dense_backward / dense_dropout_backward: a tuple (dx, dw, db) or
// (dx, dw, db, dalpha) for prelu, each entry a preallocated float32 array or None
// ("allocate it"). A network passes views of its flat gradient buffer here, so the
// weight gradients land where the optimizer reads them: no copy, no fresh pages.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/checks.h"
#include "bindings/outputs.h"

namespace fastdl::bind {

struct GradientOutputs {
  std::optional<py::array> dx, dalpha;
  py::array dw, db;

  float* dx_ptr() { return dx ? fptr(*dx) : nullptr; }
  float* dalpha_ptr() { return dalpha ? fptr(*dalpha) : nullptr; }
  // What the binding returns: (dx or None, dw, db) or (dx, dw, db, dalpha) for prelu.
  py::tuple result() const {
    py::object dx_o = dx ? py::object(*dx) : py::object(py::none());
    if (dalpha) return py::make_tuple(dx_o, dw, db, *dalpha);
    return py::make_tuple(dx_o, dw, db);
  }
};

// inputs: the call's read-only arrays (name, pointer or null), none of which an output
// may overlap; the outputs may not overlap each other either.
inline GradientOutputs gradient_outputs(py::handle out_h, py::ssize_t n, py::ssize_t k,
                                        py::ssize_t m, bool need_dx, bool prelu, Inputs inputs) {
  std::vector<OutputSpec> specs = {{"dx", {n, k}}, {"dw", {k, m}}, {"db", {m}}};
  if (prelu) specs.push_back({"dalpha", {m}});
  std::vector<std::optional<py::array>> given = given_outputs(out_h, specs, inputs);
  if (!need_dx && given[0])
    throw py::value_error("out[0] (dx): must be None when need_dx is False");
  GradientOutputs g;
  if (need_dx) g.dx = given[0] ? *given[0] : py::array(empty_f32({n, k}));
  g.dw = given[1] ? *given[1] : py::array(empty_f32({k, m}));
  g.db = given[2] ? *given[2] : py::array(empty_f32({m}));
  if (prelu) g.dalpha = given[3] ? *given[3] : py::array(empty_f32({m}));
  return g;
}

}  // namespace fastdl::bind
