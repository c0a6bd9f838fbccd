// The Python face of fastdl::OptimizerStep: what `adam_step(params, None, ...)` (any
// optimizer's step kernel with grads=None) returns, and what dense_backward's `update=`
// takes. It keeps its buffers alive while it exists.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/checks.h"
#include "bindings/gradient_outputs.h"
#include "bindings/outputs.h"
#include "fastdl/dense.h"
#include "fastdl/optim.h"

namespace fastdl::bind {

struct PyOptimizerStep {
  OptimizerStep step;
  std::vector<py::array> buffers;  // params first, then the state buffers
  std::vector<std::string> names;
};

// Where `update` (None or an OptimizerStep) applies to w, the weight matrix of a dense
// backward call: w must be a C-contiguous view inside the step's params. The update
// rewrites w's elements of params and of each state buffer, so none of `others` (the
// call's arrays, inputs and outputs, w itself skipped) may share memory with those.
// keep_dw: the caller gave dw a buffer.
using NamedArrays = std::vector<std::pair<const char*, const py::array*>>;

inline std::optional<WeightUpdate> weight_update(py::handle update, const py::array& w,
                                                 const NamedArrays& others, bool keep_dw) {
  if (update.is_none()) return std::nullopt;
  if (!py::isinstance<PyOptimizerStep>(update))
    throw py::type_error("update: expected an OptimizerStep (an optimizer step kernel called with "
                         "grads=None), got " + type_name(update));
  const PyOptimizerStep& s = update.cast<const PyOptimizerStep&>();
  const char* p0 = static_cast<const char*>(s.buffers[0].data());
  const char* w0 = static_cast<const char*>(w.data());
  const py::ssize_t bytes = w.nbytes();
  if (w0 < p0 || w0 + bytes > p0 + s.buffers[0].nbytes() || (w0 - p0) % sizeof(float) != 0)
    throw py::value_error("w: with update=, w must be a view into the step's params (the flat "
                          "parameter buffer the update rewrites), got an array outside it");
  if (!w.writeable()) throw py::value_error("w: the update rewrites w, but the array is read-only");
  const py::ssize_t offset = w0 - p0;
  for (auto& [name, a] : others) {
    if (!a || a == &w || a->nbytes() == 0) continue;  // w itself is the update's to rewrite
    const char* a0 = static_cast<const char*>(a->data());
    const char* a1 = a0 + a->nbytes();
    for (size_t i = 0; i < s.buffers.size(); ++i) {
      const char* r0 = static_cast<const char*>(s.buffers[i].data()) + offset;
      if (a0 < r0 + bytes && r0 < a1)
        throw py::value_error(std::string(name) + ": shares memory with w's part of the update's '" +
                              s.names[i] + "', which the update rewrites");
    }
  }
  return WeightUpdate{&s.step, (long)(offset / (py::ssize_t)sizeof(float)), keep_dw};
}

// A dense backward binding's outputs (gradient_outputs) and its update= (weight_update),
// checked against the same list of the call's arrays (w among them).
struct BackwardOutputs {
  GradientOutputs g;
  std::optional<WeightUpdate> update;
};

inline BackwardOutputs backward_outputs(py::handle out_h, py::handle update_h, py::ssize_t n,
                                        py::ssize_t k, py::ssize_t m, bool need_dx, bool prelu,
                                        const py::array& w, Inputs inputs) {
  BackwardOutputs r{gradient_outputs(out_h, n, k, m, need_dx, prelu, inputs, !update_h.is_none()),
                    std::nullopt};
  r.update = weight_update(update_h, w, r.g.named(inputs), r.g.dw.has_value());
  return r;
}

}  // namespace fastdl::bind
