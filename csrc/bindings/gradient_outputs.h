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

// The inputs every dense backward binding takes: dy (N, M), x (N, K), w (K, M).
struct DenseGradInputs {
  py::array dy, x, w;
  py::ssize_t n, k, m;
};

inline DenseGradInputs dense_grad_inputs(py::handle dy_h, py::handle x_h, py::handle w_h) {
  py::array dy = checked_f32(dy_h, "dy", 2, "of shape (N, M)");
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, K)");
  py::array w = checked_f32(w_h, "w", 2, "of shape (K, M)");
  const py::ssize_t n = x.shape(0), k = x.shape(1), m = w.shape(1);
  expect_dim(w, "w", 0, k, "K = x.shape[1]");
  expect_dim(dy, "dy", 0, n, "N = x.shape[0]");
  expect_dim(dy, "dy", 1, m, "M = w.shape[1]");
  return {dy, x, w, n, k, m};
}

// inputs: the call's read-only arrays (name, pointer or null), none of which an output
// may overlap; the outputs may not overlap each other either.
inline GradientOutputs gradient_outputs(
    py::handle out_h, py::ssize_t n, py::ssize_t k, py::ssize_t m, bool need_dx, bool prelu,
    std::initializer_list<std::pair<const char*, const py::array*>> inputs) {
  const size_t count = prelu ? 4 : 3;
  const char* names[4] = {"out[0] (dx)", "out[1] (dw)", "out[2] (db)", "out[3] (dalpha)"};
  std::vector<py::handle> given(count, py::none());
  if (!out_h.is_none()) {
    if (!py::isinstance<py::tuple>(out_h) && !py::isinstance<py::list>(out_h))
      throw py::type_error("out: expected a tuple (dx, dw, db" +
                           std::string(prelu ? ", dalpha" : "") +
                           ") of float32 arrays or None, got " + type_name(out_h));
    py::sequence seq = py::reinterpret_borrow<py::sequence>(out_h);
    if (seq.size() != count)
      throw py::value_error("out: expected " + std::to_string(count) + " entries (dx, dw, db" +
                            (prelu ? ", dalpha" : "") + "), got " + std::to_string(seq.size()));
    for (size_t i = 0; i < count; ++i) given[i] = seq[i];
    if (!need_dx && !given[0].is_none())
      throw py::value_error("out[0] (dx): must be None when need_dx is False");
  }
  const std::vector<std::vector<py::ssize_t>> shapes = {{n, k}, {k, m}, {m}, {m}};
  std::vector<py::array> taken;  // outputs checked so far: later ones may not overlap them
  auto take = [&](size_t i) -> std::optional<py::array> {
    if (given[i].is_none()) return std::nullopt;
    py::array a = checked_out(given[i], names[i], shapes[i], inputs);
    for (size_t j = 0; j < taken.size(); ++j)
      if (overlaps(a, taken[j]))
        throw py::value_error(std::string(names[i]) + ": shares memory with another entry of out");
    taken.push_back(a);
    return a;
  };
  GradientOutputs g;
  std::optional<py::array> dx = take(0), dw = take(1), db = take(2);
  std::optional<py::array> dalpha = prelu ? take(3) : std::nullopt;
  if (need_dx) g.dx = dx ? *dx : py::array(empty_f32({n, k}));
  g.dw = dw ? *dw : py::array(empty_f32({k, m}));
  g.db = db ? *db : py::array(empty_f32({m}));
  if (prelu) g.dalpha = dalpha ? *dalpha : py::array(empty_f32({m}));
  return g;
}

}  // namespace fastdl::bind
