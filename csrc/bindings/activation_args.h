// The `alpha` argument of the fused activations, shared by the bindings of every
// layer that takes an activation (dense, dense_dropout).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "bindings/checks.h"
#include "fastdl/activation.h"

namespace fastdl::bind {

struct AlphaArg {
  float scalar = 0.0f;
  std::optional<py::array> vec;  // prelu (py::array() would be an empty array, not "none")
  const float* vec_ptr() const { return vec ? fptr(*vec) : nullptr; }
};

// Validates `alpha` against the activation: a float >= 0 for leaky_relu/elu (None
// means the default), a float32 (m,) array for prelu, and None for the others.
inline AlphaArg parse_alpha(Activation act, py::handle alpha, py::ssize_t m) {
  AlphaArg r;
  const std::string an = activation_name(act);
  if (act == Activation::prelu) {
    if (alpha.is_none())
      throw py::value_error("alpha: prelu needs its learned slopes as a float32 array of shape (" +
                            std::to_string(m) + ",) (PyTorch initialises them to 0.25)");
    r.vec = checked_f32(alpha, "alpha", 1, "of shape (M,) for prelu");
    expect_dim(*r.vec, "alpha", 0, m, "one slope per output unit, M = w.shape[1]");
    return r;
  }
  if (act == Activation::leaky_relu || act == Activation::elu) {
    r.scalar = activation_default_alpha(act);
    if (!alpha.is_none()) {
      const float v = f32_arg(alpha, "alpha");  // a number, finite, within float32
      if (!(v >= 0.0f))
        throw py::value_error("alpha: " + an + " needs alpha >= 0 (its backward works from y), got " +
                              scalar_str(alpha));
      r.scalar = v;
    }
    return r;
  }
  if (!alpha.is_none())
    throw py::value_error("alpha: only leaky_relu, elu and prelu take alpha; activation '" + an +
                          "' got alpha=" + std::string(py::str(alpha)));
  return r;
}

// The saved forward array a backward kernel reads the derivative from: z (N, M) for the
// NEEDS_Z activations, y (N, M) for the others, nothing for linear. `forward` names the
// kernel that returned it, for the message.
inline std::optional<py::array> saved_activation_input(Activation act, py::handle y_h,
                                                       py::handle z_h, py::ssize_t n,
                                                       py::ssize_t m, const char* forward) {
  const std::string an = activation_name(act);
  std::optional<py::array> s;
  if (activation_needs_z(act)) {
    if (z_h.is_none())
      throw py::value_error("z: activation '" + an + "' needs the pre-activation z returned by " +
                            forward + " (y is not enough)");
    s = checked_f32(z_h, "z", 2, "of shape (N, M)");
    expect_dim(*s, "z", 0, n, "N = x.shape[0]");
    expect_dim(*s, "z", 1, m, "M = w.shape[1]");
  } else if (act != Activation::linear) {
    if (y_h.is_none())
      throw py::value_error("y: activation '" + an + "' needs the forward output y of " + forward);
    s = checked_f32(y_h, "y", 2, "of shape (N, M)");
    expect_dim(*s, "y", 0, n, "N = x.shape[0]");
    expect_dim(*s, "y", 1, m, "M = w.shape[1]");
  }
  return s;
}

}  // namespace fastdl::bind
