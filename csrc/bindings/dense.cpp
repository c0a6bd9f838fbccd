// Bindings for the dense layer and the GEMM: check, convert, release the GIL, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>

#include "bindings/activation_args.h"
#include "bindings/checks.h"
#include "bindings/dense_args.h"
#include "bindings/gradient_outputs.h"
#include "bindings/optimizer_step.h"
#include "bindings/outputs.h"
#include "bindings/precision_arg.h"
#include "fastdl/activation.h"
#include "fastdl/dense.h"
#include "fastdl/gemm.h"
#include "gemm/gemm_isa.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

py::object dense_forward_py(py::handle x_h, py::handle w_h, py::handle b_h,
                            const std::string& activation, py::handle alpha_h, py::handle out_h,
                            py::handle precision_h) {
  const Activation act = parse_activation(activation);
  const Precision precision = precision_arg(precision_h);
  auto [x, w, b, n, k, m] = dense_inputs(x_h, w_h, b_h);
  AlphaArg alpha = parse_alpha(act, alpha_h, m);
  const bool needs_z = activation_needs_z(act);
  const Inputs inputs = {{"x", &x}, {"w", &w}, {"b", b ? &*b : nullptr},
                         {"alpha", alpha.vec ? &*alpha.vec : nullptr}};
  // out= is y alone (an array) or every result as a tuple: (y,), or (y, z) where z is kept.
  std::vector<OutputSpec> specs = {{"y", {n, m}}};
  if (needs_z) specs.push_back({"z", {n, m}});
  std::vector<py::array> outs = output_arrays_or_first(out_h, specs, inputs);
  py::array y = outs[0];
  std::optional<py::array> z;
  if (needs_z) z = outs[1];
  {
    const float *px = fptr(x), *pw = fptr(w), *pb = b ? fptr(*b) : nullptr, *pa = alpha.vec_ptr();
    float *py_ = fptr(y), *pz = z ? fptr(*z) : nullptr;
    py::gil_scoped_release release;
    dense_forward(py_, pz, px, pw, pb, n, k, m, act, alpha.scalar, pa, precision);
  }
  if (z) return py::make_tuple(y, *z);
  return y;
}

py::tuple dense_backward_py(py::handle dy_h, py::handle x_h, py::handle w_h,
                            const std::string& activation, py::handle y_h, py::handle z_h,
                            py::handle alpha_h, bool need_dx, py::handle out_h,
                            py::handle update_h, py::handle precision_h) {
  const Activation act = parse_activation(activation);
  const Precision precision = precision_arg(precision_h);
  auto [dy, x, w, n, k, m] = dense_grad_inputs(dy_h, x_h, w_h);
  AlphaArg alpha = parse_alpha(act, alpha_h, m);
  std::optional<py::array> s = saved_activation_input(act, y_h, z_h, n, m, "dense_forward");
  auto [g, update] = backward_outputs(
      out_h, update_h, n, k, m, need_dx, act == Activation::prelu, w,
      {{"dy", &dy},
       {"x", &x},
       {"w", &w},
       {activation_needs_z(act) ? "z" : "y", s ? &*s : nullptr},
       {"alpha", alpha.vec ? &*alpha.vec : nullptr}});
  {
    const float *pdy = fptr(dy), *px = fptr(x), *pw = fptr(w), *ps = s ? fptr(*s) : nullptr,
                *pa = alpha.vec_ptr();
    float *pdx = g.dx_ptr(), *pdw = g.dw_ptr(), *pdb = fptr(g.db), *pdal = g.dalpha_ptr();
    const WeightUpdate* pu = update ? &*update : nullptr;
    py::gil_scoped_release release;
    dense_backward(pdx, pdw, pdb, pdal, pdy, px, pw, ps, n, k, m, act, alpha.scalar, pa, pu,
                   precision);
  }
  return g.result();
}

py::array matmul_py(py::handle a_h, py::handle b_h, py::handle out_h, py::handle precision_h) {
  const Precision precision = precision_arg(precision_h);
  py::array a = checked_f32(a_h, "a", 2, "of shape (M, K)");
  py::array b = checked_f32(b_h, "b", 2, "of shape (K, N)");
  const py::ssize_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  expect_dim(b, "b", 0, k, "K = a.shape[1]");
  py::array c = out_h.is_none() ? py::array(empty_f32({m, n}))
                                : checked_out(out_h, "out", {m, n}, {{"a", &a}, {"b", &b}});
  {
    const float *pa = fptr(a), *pb = fptr(b);
    float* pc = fptr(c);
    py::gil_scoped_release release;
    sgemm(m, n, k, pa, k, 1, pb, n, 1, pc, n, false, nullptr, precision);
  }
  return c;
}

}  // namespace

void register_dense(py::module_& m) {
  m.def("dense_forward", &dense_forward_py, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("activation") = "linear", py::kw_only(), py::arg("alpha") = py::none(),
        py::arg("out") = py::none(), py::arg("precision") = "fp32",
        "y = f(x @ w + b), or (y, z) for the activations whose backward needs z (prelu, silu, "
        "gelu); b may be None.");
  m.def("dense_backward", &dense_backward_py, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("activation"), py::kw_only(), py::arg("y") = py::none(),
        py::arg("z") = py::none(), py::arg("alpha") = py::none(), py::arg("need_dx") = true,
        py::arg("out") = py::none(), py::arg("update") = py::none(),
        py::arg("precision") = "fp32",
        "(dx, dw, db), plus dalpha for prelu; pass z for the activations that need it, y for "
        "the others. dx is None when need_dx=False; update= steps w inside the dw GEMM.");
  m.def("matmul", &matmul_py, py::arg("a"), py::arg("b"), py::kw_only(),
        py::arg("out") = py::none(), py::arg("precision") = "fp32", "a @ b (float32 GEMM).");
  m.def(
      "_round_to_bf16",
      [](py::handle x_h) {
        py::array x = checked_f32(x_h, "x", 1, "of shape (N,)");
        py::array y = empty_f32({x.shape(0)});
        const float* px = fptr(x);
        float* py_ = fptr(y);
        const long n = (long)x.shape(0);
        {
          py::gil_scoped_release release;
          round_to_bf16_on_path(py_, px, n);
        }
        return y;
      },
      py::arg("x"),
      "Test hook: x rounded to bf16 (as float32) by the selected path's own conversion, "
      "the one its bf16 GEMM packing applies.");
}

}  // namespace fastdl::bind
