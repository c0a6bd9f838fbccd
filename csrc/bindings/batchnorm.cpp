// Bindings for batch normalization: check, convert, release the GIL, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <optional>
#include <string>

#include "bindings/checks.h"
#include "bindings/outputs.h"
#include "fastdl/batchnorm.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

const char* const kM = "M = x.shape[1], one value per feature";

// A per-feature float32 (M,) array, or nothing for None when allowed.
std::optional<py::array> feature_vec(py::handle h, const char* name, py::ssize_t m,
                                     bool allow_none, bool writable = false) {
  if (h.is_none()) {
    if (allow_none) return std::nullopt;
    throw py::value_error(std::string(name) + ": expected a float32 array of shape (" +
                          std::to_string(m) + ",), got None");
  }
  py::array a = checked_f32(h, name, 1, "of shape (M,)", writable);
  expect_dim(a, name, 0, m, kM);
  return a;
}

const float* ptr(const std::optional<py::array>& a) { return a ? fptr(*a) : nullptr; }

float eps_arg(py::handle h) {
  const float eps = f32_arg(h, "eps");
  if (!(eps >= 0.0f))
    throw py::value_error("eps: expected a finite value >= 0, got " + scalar_str(h));
  return eps;
}

// The running statistics are updated in place: they must not alias each other or an input.
void check_in_place(const std::optional<py::array>& out, const char* name,
                    std::initializer_list<std::pair<const char*, const std::optional<py::array>*>> others) {
  if (!out) return;
  for (auto& [other_name, other] : others)
    if (*other && overlaps(*out, **other))
      throw py::value_error(std::string(name) + ": shares memory with '" + other_name +
                            "'; the running statistics are updated in place");
}

py::tuple forward_train_py(py::handle x_h, py::handle gamma_h, py::handle beta_h, py::handle rm_h,
                           py::handle rv_h, py::handle momentum_h, py::handle eps_h, py::handle out_h) {
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, M)");
  const py::ssize_t n = x.shape(0), m = x.shape(1);
  auto gamma = feature_vec(gamma_h, "gamma", m, true);
  auto beta = feature_vec(beta_h, "beta", m, true);
  auto rm = feature_vec(rm_h, "running_mean", m, true, /*writable=*/true);
  auto rv = feature_vec(rv_h, "running_var", m, true, /*writable=*/true);
  const double momentum = finite_arg(momentum_h, "momentum");
  if (!(momentum >= 0.0 && momentum <= 1.0))
    throw py::value_error("momentum: expected a value in [0, 1], got " + scalar_str(momentum_h));
  const float eps = eps_arg(eps_h);
  if (n < 2)
    throw py::value_error("x: Expected more than 1 value per channel when training, got input size " +
                          shape_str(x) + " (use batchnorm_forward_eval for single samples)");
  const std::optional<py::array> xo = x;
  check_in_place(rm, "running_mean", {{"x", &xo}, {"gamma", &gamma}, {"beta", &beta}, {"running_var", &rv}});
  check_in_place(rv, "running_var", {{"x", &xo}, {"gamma", &gamma}, {"beta", &beta}});
  std::vector<py::array> outs = output_arrays(
      out_h, {{"y", {n, m}}, {"save_mean", {m}}, {"save_invstd", {m}}},
      {{"x", &x}, {"gamma", gamma ? &*gamma : nullptr}, {"beta", beta ? &*beta : nullptr},
       {"running_mean", rm ? &*rm : nullptr}, {"running_var", rv ? &*rv : nullptr}});
  py::array y = outs[0], save_mean = outs[1], save_invstd = outs[2];
  {
    const float *px = fptr(x), *pg = ptr(gamma), *pb = ptr(beta);
    float *py_ = fptr(y), *psm = fptr(save_mean), *psi = fptr(save_invstd);
    float *prm = const_cast<float*>(ptr(rm)), *prv = const_cast<float*>(ptr(rv));
    py::gil_scoped_release release;
    batchnorm_forward_train(py_, psm, psi, prm, prv, px, pg, pb, n, m, (float)momentum, eps);
  }
  return py::make_tuple(y, save_mean, save_invstd);
}

py::array forward_eval_py(py::handle x_h, py::handle gamma_h, py::handle beta_h, py::handle rm_h,
                          py::handle rv_h, py::handle eps_h, py::handle out_h) {
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, M)");
  const py::ssize_t n = x.shape(0), m = x.shape(1);
  auto gamma = feature_vec(gamma_h, "gamma", m, true);
  auto beta = feature_vec(beta_h, "beta", m, true);
  auto rm = feature_vec(rm_h, "running_mean", m, false);
  auto rv = feature_vec(rv_h, "running_var", m, false);
  const float eps = eps_arg(eps_h);
  py::array y = output_array(out_h, {n, m},
                             {{"x", &x}, {"gamma", gamma ? &*gamma : nullptr}, {"beta", beta ? &*beta : nullptr},
                              {"running_mean", &*rm}, {"running_var", &*rv}});
  {
    const float *px = fptr(x), *pg = ptr(gamma), *pb = ptr(beta), *prm = ptr(rm), *prv = ptr(rv);
    float* py_ = fptr(y);
    py::gil_scoped_release release;
    batchnorm_forward_eval(py_, px, pg, pb, prm, prv, n, m, eps);
  }
  return y;
}

py::tuple backward_py(py::handle dy_h, py::handle x_h, py::handle gamma_h, py::handle mean_h,
                      py::handle invstd_h, py::handle out_h) {
  py::array dy = checked_f32(dy_h, "dy", 2, "of shape (N, M)");
  py::array x = checked_f32(x_h, "x", 2, "of shape (N, M)");
  const py::ssize_t n = x.shape(0), m = x.shape(1);
  expect_dim(dy, "dy", 0, n, "N = x.shape[0]");
  expect_dim(dy, "dy", 1, m, "M = x.shape[1]");
  auto gamma = feature_vec(gamma_h, "gamma", m, true);
  auto mean = feature_vec(mean_h, "save_mean", m, false);
  auto invstd = feature_vec(invstd_h, "save_invstd", m, false);
  std::vector<py::array> outs = output_arrays(
      out_h, {{"dx", {n, m}}, {"dgamma", {m}}, {"dbeta", {m}}},
      {{"dy", &dy}, {"x", &x}, {"gamma", gamma ? &*gamma : nullptr}, {"save_mean", &*mean},
       {"save_invstd", &*invstd}});
  py::array dx = outs[0], dgamma = outs[1], dbeta = outs[2];
  {
    const float *pdy = fptr(dy), *px = fptr(x), *pg = ptr(gamma), *pm = ptr(mean), *pi = ptr(invstd);
    float *pdx = fptr(dx), *pdg = fptr(dgamma), *pdb = fptr(dbeta);
    py::gil_scoped_release release;
    batchnorm_backward(pdx, pdg, pdb, pdy, px, pg, pm, pi, n, m);
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

}  // namespace

void register_batchnorm(py::module_& m) {
  m.def("batchnorm_forward_train", &forward_train_py, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("running_mean"), py::arg("running_var"), py::kw_only(),
        py::arg("momentum") = 0.1, py::arg("eps") = 1e-5, py::arg("out") = py::none(),
        "(y, save_mean, save_invstd); updates running_mean/var in place (unbiased variance).");
  m.def("batchnorm_forward_eval", &forward_eval_py, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("running_mean"), py::arg("running_var"), py::kw_only(),
        py::arg("eps") = 1e-5, py::arg("out") = py::none(), "y normalised with the running statistics.");
  m.def("batchnorm_backward", &backward_py, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("save_mean"), py::arg("save_invstd"), py::kw_only(), py::arg("out") = py::none(),
        "(dx, dgamma, dbeta).");
}

}  // namespace fastdl::bind
