// Bindings for maxout: check, convert, release the GIL, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/checks.h"
#include "bindings/gradient_outputs.h"
#include "bindings/optimizer_step.h"
#include "bindings/outputs.h"
#include "bindings/precision_arg.h"
#include "fastdl/maxout.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

// pieces: an int in [1, 255] dividing `cols` (the pre-max column count).
int pieces_arg(py::handle h, py::ssize_t cols, const char* cols_name) {
  const py::int_ v = int_arg(h, "pieces");  // a Python or numpy int, of any size
  if (v.attr("__lt__")(1).cast<bool>() || v.attr("__gt__")(255).cast<bool>())
    throw py::value_error("pieces: expected 1 <= pieces <= 255 (argmax is uint8), got " +
                          std::string(py::str(v)));
  const long long k = v.cast<long long>();
  if (cols >= 0 && cols % k != 0)
    throw py::value_error("pieces: " + std::to_string(k) + " does not divide " + cols_name +
                          " = " + std::to_string(cols) + " (units take adjacent groups of pieces columns)");
  return (int)k;
}

uint8_t* u8ptr(const py::array& a) { return static_cast<uint8_t*>(const_cast<void*>(a.data())); }

py::array checked_argmax(py::handle h, py::ssize_t n, py::ssize_t m) {
  py::array a = checked_array(h, "argmax", 2, "of shape (N, M)", 'u', 1);
  expect_dim(a, "argmax", 0, n, "N = dy.shape[0]");
  expect_dim(a, "argmax", 1, m, "M = dy.shape[1]");
  return a;
}

py::tuple maxout_forward_py(py::handle z_h, py::handle pieces_h, py::handle out_h) {
  py::array z = checked_f32(z_h, "z", 2, "of shape (N, M * pieces)");
  const py::ssize_t n = z.shape(0), cols = z.shape(1);
  const int k = pieces_arg(pieces_h, cols, "z.shape[1]");
  const py::ssize_t m = cols / k;
  std::vector<py::array> outs = output_arrays(out_h, {{"y", {n, m}}, {"argmax", {n, m}, 'u', 1}}, {{"z", &z}});
  py::array y = outs[0], argmax = outs[1];
  {
    const float* pz = fptr(z);
    float* py_ = fptr(y);
    uint8_t* pa = u8ptr(argmax);
    py::gil_scoped_release release;
    maxout_forward(py_, pa, pz, n, m, k);
  }
  return py::make_tuple(y, argmax);
}

py::array maxout_backward_py(py::handle dy_h, py::handle argmax_h, py::handle pieces_h,
                             py::handle out_h) {
  py::array dy = checked_f32(dy_h, "dy", 2, "of shape (N, M)");
  const py::ssize_t n = dy.shape(0), m = dy.shape(1);
  py::array argmax = checked_argmax(argmax_h, n, m);
  const int k = pieces_arg(pieces_h, -1, "");
  py::array dz = output_array(out_h, {n, m * k}, {{"dy", &dy}, {"argmax", &argmax}});
  {
    const float* pdy = fptr(dy);
    const uint8_t* pa = u8ptr(argmax);
    float* pdz = fptr(dz);
    py::gil_scoped_release release;
    maxout_backward(pdz, pdy, pa, n, m, k);
  }
  return dz;
}

py::tuple dense_maxout_forward_py(py::handle x_h, py::handle w_h, py::handle b_h,
                                  py::handle pieces_h, py::handle out_h,
                                  py::handle precision_h) {
  const Precision precision = precision_arg(precision_h);
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, K)");
  py::array w = checked_f32(w_h, "w", 2, "of shape (K, M * pieces)");
  const py::ssize_t n = x.shape(0), k = x.shape(1), cols = w.shape(1);
  expect_dim(w, "w", 0, k, "K = x.shape[1]; w is stored (in, out)");
  const int pieces = pieces_arg(pieces_h, cols, "w.shape[1]");
  const py::ssize_t m = cols / pieces;
  std::optional<py::array> b;
  if (!b_h.is_none()) {
    b = checked_f32(b_h, "b", 1, "of shape (M * pieces,)");
    expect_dim(*b, "b", 0, cols, "M * pieces = w.shape[1]");
  }
  std::vector<py::array> outs = output_arrays(out_h, {{"y", {n, m}}, {"argmax", {n, m}, 'u', 1}},
                                              {{"x", &x}, {"w", &w}, {"b", b ? &*b : nullptr}});
  py::array y = outs[0], argmax = outs[1];
  {
    const float *px = fptr(x), *pw = fptr(w), *pb = b ? fptr(*b) : nullptr;
    float* py_ = fptr(y);
    uint8_t* pa = u8ptr(argmax);
    py::gil_scoped_release release;
    dense_maxout_forward(py_, pa, px, pw, pb, n, k, m, pieces, precision);
  }
  return py::make_tuple(y, argmax);
}

py::tuple dense_maxout_backward_py(py::handle dy_h, py::handle x_h, py::handle w_h,
                                   py::handle argmax_h, py::handle pieces_h, bool need_dx,
                                   py::handle out_h, py::handle update_h,
                                   py::handle precision_h) {
  const Precision precision = precision_arg(precision_h);
  py::array dy = checked_f32(dy_h, "dy", 2, "of shape (N, M)");
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, K)");
  py::array w = checked_f32(w_h, "w", 2, "of shape (K, M * pieces)");
  const py::ssize_t n = x.shape(0), k = x.shape(1), cols = w.shape(1);
  expect_dim(w, "w", 0, k, "K = x.shape[1]");
  const int pieces = pieces_arg(pieces_h, cols, "w.shape[1]");
  const py::ssize_t m = cols / pieces;
  expect_dim(dy, "dy", 0, n, "N = x.shape[0]");
  expect_dim(dy, "dy", 1, m, "M = w.shape[1] / pieces");
  py::array argmax = checked_argmax(argmax_h, n, m);
  // dw and db have the pre-max width (cols = M * pieces); dx is (N, K).
  auto [g, update] = backward_outputs(out_h, update_h, n, k, cols, need_dx, false, w,
                                      {{"dy", &dy}, {"x", &x}, {"w", &w}, {"argmax", &argmax}});
  {
    const float *pdy = fptr(dy), *px = fptr(x), *pw = fptr(w);
    const uint8_t* pa = u8ptr(argmax);
    float *pdx = g.dx_ptr(), *pdw = g.dw_ptr(), *pdb = fptr(g.db);
    const WeightUpdate* pu = update ? &*update : nullptr;
    py::gil_scoped_release release;
    dense_maxout_backward(pdx, pdw, pdb, pdy, px, pw, pa, n, k, m, pieces, pu, precision);
  }
  return g.result();
}

}  // namespace

void register_maxout(py::module_& m) {
  m.def("maxout_forward", &maxout_forward_py, py::arg("z"), py::arg("pieces"), py::kw_only(),
        py::arg("out") = py::none(),
        "(y, argmax): each unit the max of its pieces (adjacent columns of z), argmax uint8.");
  m.def("maxout_backward", &maxout_backward_py, py::arg("dy"), py::arg("argmax"), py::arg("pieces"),
        py::kw_only(), py::arg("out") = py::none(), "dz: dy routed to each unit's winning piece.");
  m.def("dense_maxout_forward", &dense_maxout_forward_py, py::arg("x"), py::arg("w"),
        py::arg("b"), py::arg("pieces"), py::kw_only(), py::arg("out") = py::none(),
        py::arg("precision") = "fp32", "(y, argmax) of maxout(x @ w + b) in one kernel.");
  m.def("dense_maxout_backward", &dense_maxout_backward_py, py::arg("dy"), py::arg("x"),
        py::arg("w"), py::arg("argmax"), py::arg("pieces"), py::kw_only(),
        py::arg("need_dx") = true, py::arg("out") = py::none(), py::arg("update") = py::none(),
        py::arg("precision") = "fp32", "(dx, dw, db): the backward of dense_maxout_forward.");
}

}  // namespace fastdl::bind
