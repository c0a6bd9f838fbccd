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
  std::optional<py::array> dx, dw, dalpha;
  py::array db;

  float* dx_ptr() { return dx ? fptr(*dx) : nullptr; }
  float* dw_ptr() { return dw ? fptr(*dw) : nullptr; }
  // `arrays` followed by the outputs, each named (an update='s overlap check).
  std::vector<std::pair<const char*, const py::array*>> named(Inputs arrays) const {
    std::vector<std::pair<const char*, const py::array*>> all(arrays);
    all.push_back({"dx", dx ? &*dx : nullptr});
    all.push_back({"dw", dw ? &*dw : nullptr});
    all.push_back({"db", &db});
    all.push_back({"dalpha", dalpha ? &*dalpha : nullptr});
    return all;
  }
  float* dalpha_ptr() { return dalpha ? fptr(*dalpha) : nullptr; }
  // What the binding returns: (dx or None, dw, db) or (dx, dw, db, dalpha) for prelu;
  // dw is None where an update= took the gradient and out= gave it no buffer.
  py::tuple result() const {
    py::object dx_o = dx ? py::object(*dx) : py::object(py::none());
    py::object dw_o = dw ? py::object(*dw) : py::object(py::none());
    if (dalpha) return py::make_tuple(dx_o, dw_o, db, *dalpha);
    return py::make_tuple(dx_o, dw_o, db);
  }
};

// inputs: the call's read-only arrays (name, pointer or null), none of which an output
// may overlap; the outputs may not overlap each other either. dw_optional (an update=
// takes the gradient): dw is allocated only where out= gives it.
inline GradientOutputs gradient_outputs(py::handle out_h, py::ssize_t n, py::ssize_t k,
                                        py::ssize_t m, bool need_dx, bool prelu, Inputs inputs,
                                        bool dw_optional = false) {
  std::vector<OutputSpec> specs = {{"dx", {n, k}}, {"dw", {k, m}}, {"db", {m}}};
  if (prelu) specs.push_back({"dalpha", {m}});
  std::vector<std::optional<py::array>> given = given_outputs(out_h, specs, inputs);
  if (!need_dx && given[0])
    throw py::value_error("out[0] (dx): must be None when need_dx is False");
  GradientOutputs g;
  if (need_dx) g.dx = given[0] ? *given[0] : py::array(empty_f32({n, k}));
  if (given[1] || !dw_optional) g.dw = given[1] ? *given[1] : py::array(empty_f32({k, m}));
  g.db = given[2] ? *given[2] : py::array(empty_f32({m}));
  if (prelu) g.dalpha = given[3] ? *given[3] : py::array(empty_f32({m}));
  return g;
}

}  // namespace fastdl::bind
