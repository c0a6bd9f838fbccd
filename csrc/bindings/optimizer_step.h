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
// call's other arrays, inputs and outputs) may share memory with those. keep_dw: the
// caller gave dw a buffer.
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
    if (!a || a->nbytes() == 0) continue;
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

}  // namespace fastdl::bind
