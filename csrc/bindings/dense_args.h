// The array arguments the dense bindings share (dense, dense + dropout), checked once:
// x (N, K), w (K, M) stored in-by-out, b (M,) or None; dy (N, M) for the backward.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>

#include "bindings/checks.h"

namespace fastdl::bind {

struct DenseInputs {
  py::array x, w;
  std::optional<py::array> b;
  py::ssize_t n, k, m;
};

inline DenseInputs dense_inputs(py::handle x_h, py::handle w_h, py::handle b_h) {
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, K)");
  py::array w = checked_f32(w_h, "w", 2, "of shape (K, M)");
  const py::ssize_t n = x.shape(0), k = x.shape(1), m = w.shape(1);
  expect_dim(w, "w", 0, k, "K = x.shape[1]; w is stored (in, out)");
  std::optional<py::array> b;
  if (!b_h.is_none()) {
    b = checked_f32(b_h, "b", 1, "of shape (M,)");
    expect_dim(*b, "b", 0, m, "M = w.shape[1]");
  }
  return {x, w, b, n, k, m};
}

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

}  // namespace fastdl::bind
