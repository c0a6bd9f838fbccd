// Bindings for dropout and its Philox generator: check, convert, release the GIL, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "bindings/activation_args.h"
#include "bindings/checks.h"
#include "bindings/dense_args.h"
#include "bindings/gradient_outputs.h"
#include "bindings/optimizer_step.h"
#include "bindings/outputs.h"
#include "bindings/precision_arg.h"
#include "dropout/dropout_isa.h"
#include "fastdl/activation.h"
#include "fastdl/dropout.h"
#include "fastdl/philox.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

// A Python (or numpy) integer in [0, 2^bits), else TypeError / ValueError naming it.
uint64_t unsigned_arg(py::handle h, const char* name, int bits) {
  const py::int_ v = int_arg(h, name);
  const py::int_ limit = py::int_(1).attr("__lshift__")(bits);
  if (v.attr("__lt__")(0).cast<bool>() || v.attr("__ge__")(limit).cast<bool>())
    throw py::value_error(std::string(name) + ": expected an integer in [0, 2**" +
                          std::to_string(bits) + "), got " + std::string(py::str(v)));
  return v.cast<uint64_t>();
}

double p_arg(py::handle h) {
  const double p = float_arg(h, "p");
  check_dropout_p(p);  // std::invalid_argument -> ValueError naming p
  return p;
}

// x of any rank (dropout is elementwise over the flat, C-order index).
py::array any_rank_f32(py::handle h, const char* name) {
  const int nd = py::isinstance<py::array>(h) ? (int)py::reinterpret_borrow<py::array>(h).ndim() : 1;
  return checked_f32(h, name, nd, "");
}

py::ssize_t mask_bytes(py::ssize_t size) { return (size + 7) / 8; }

py::array checked_mask(py::handle h, py::ssize_t size, const char* from) {
  py::array mask = checked_array(h, "mask", 1, "of bit-packed keep flags", 'u', 1);
  expect_dim(mask, "mask", 0, mask_bytes(size),
             "ceil(size / 8) bytes for the " + std::to_string(size) + " elements of " + from);
  return mask;
}

uint8_t* u8ptr(const py::array& a) { return static_cast<uint8_t*>(const_cast<void*>(a.data())); }

py::tuple philox4x32_py(py::handle counter_h, py::handle key_h) {
  const py::sequence counter = counter_h.cast<py::sequence>(), key = key_h.cast<py::sequence>();
  if (counter.size() != 4) throw py::value_error("counter: expected 4 uint32 words");
  if (key.size() != 2) throw py::value_error("key: expected 2 uint32 words");
  uint32_t c[4], k[2], r[4];
  for (int i = 0; i < 4; ++i) c[i] = (uint32_t)unsigned_arg(counter[i], "counter", 32);
  for (int i = 0; i < 2; ++i) k[i] = (uint32_t)unsigned_arg(key[i], "key", 32);
  philox4x32(r, c, k);
  return py::make_tuple(r[0], r[1], r[2], r[3]);
}

// Test hook: the active path's vectorised keep bits at counter c, as (bits, count).
py::tuple keep_bits_at_py(py::handle c_h, py::handle p_h, py::handle seed_h, py::handle step_h,
                          py::handle stream_h) {
  const uint64_t c = unsigned_arg(c_h, "c", 62);
  const DropoutKey key = make_dropout_key(unsigned_arg(seed_h, "seed", 64),
                                          (uint32_t)unsigned_arg(step_h, "step", 32),
                                          (uint32_t)unsigned_arg(stream_h, "stream", 32), p_arg(p_h));
  int nbits = 0;
  const uint64_t bits = dropout_keep_bits_at(c, key, &nbits);
  return py::make_tuple(bits, nbits);
}

// offset + size must stay below 2^62 (the element index feeds 62 bits of counter).
uint64_t offset_arg(py::handle h, py::ssize_t size) {
  const uint64_t offset = unsigned_arg(h, "offset", 62);
  if (offset + (uint64_t)size >= (1ull << 62))
    throw py::value_error("offset: offset + size must be < 2**62, got offset " +
                          std::to_string(offset) + " for " + std::to_string(size) + " elements");
  return offset;
}

py::tuple dropout_forward_py(py::handle x_h, py::handle p_h, py::handle seed_h, py::handle step_h,
                             py::handle stream_h, bool scale, py::handle out_h, py::handle offset_h) {
  py::array x = any_rank_f32(x_h, "x");
  const double p = p_arg(p_h);
  const uint64_t seed = unsigned_arg(seed_h, "seed", 64);
  const uint32_t step = (uint32_t)unsigned_arg(step_h, "step", 32);
  const uint32_t stream = (uint32_t)unsigned_arg(stream_h, "stream", 32);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  const py::ssize_t size = x.size();
  const uint64_t offset = offset_arg(offset_h, size);
  // out= is y alone (an array) or the pair (y, mask) as a tuple.
  if (py::isinstance<py::array>(out_h) && py::reinterpret_borrow<py::array>(out_h).ndim() != x.ndim())
    throw py::value_error("out: expected shape " + shape_str(x) + " (x's), got " +
                          shape_str(py::reinterpret_borrow<py::array>(out_h)));
  std::vector<py::array> outs = output_arrays_or_first(
      out_h, {{"y", shape}, {"mask", {mask_bytes(size)}, 'u', 1}}, {{"x", &x}});
  py::array y = outs[0], mask = outs[1];
  {
    const float* px = fptr(x);
    float* py_ = fptr(y);
    uint8_t* pm = u8ptr(mask);
    py::gil_scoped_release release;
    dropout_forward(py_, pm, px, size, p, seed, step, stream, scale, offset);
  }
  return py::make_tuple(y, mask);
}

py::array dropout_backward_py(py::handle dy_h, py::handle mask_h, py::handle p_h, bool scale,
                              py::handle out_h) {
  py::array dy = any_rank_f32(dy_h, "dy");
  py::array mask = checked_mask(mask_h, dy.size(), "dy");
  const double p = p_arg(p_h);
  std::vector<py::ssize_t> shape(dy.shape(), dy.shape() + dy.ndim());
  py::array dx = output_array(out_h, shape, {{"dy", &dy}, {"mask", &mask}});
  {
    const float* pdy = fptr(dy);
    const uint8_t* pm = u8ptr(mask);
    float* pdx = fptr(dx);
    const long size = (long)dy.size();
    py::gil_scoped_release release;
    dropout_backward(pdx, pdy, pm, size, p, scale);
  }
  return dx;
}

py::tuple dense_dropout_forward_py(py::handle x_h, py::handle w_h, py::handle b_h,
                                   const std::string& activation, py::handle p_h,
                                   py::handle seed_h, py::handle step_h, py::handle stream_h,
                                   py::handle alpha_h, bool scale, py::handle offset_h,
                                   py::handle out_h, py::handle precision_h) {
  const Activation act = parse_activation(activation);
  const Precision precision = precision_arg(precision_h);
  auto [x, w, b, n, k, m] = dense_inputs(x_h, w_h, b_h);
  AlphaArg alpha = parse_alpha(act, alpha_h, m);
  const double p = p_arg(p_h);
  const uint64_t seed = unsigned_arg(seed_h, "seed", 64);
  const uint32_t step = (uint32_t)unsigned_arg(step_h, "step", 32);
  const uint32_t stream = (uint32_t)unsigned_arg(stream_h, "stream", 32);
  const uint64_t offset = offset_arg(offset_h, n * m);
  std::vector<OutputSpec> specs = {{"y", {n, m}}, {"mask", {mask_bytes(n * m)}, 'u', 1}};
  if (activation_needs_z(act)) specs.push_back({"z", {n, m}});
  std::vector<py::array> outs = output_arrays(
      out_h, specs, {{"x", &x}, {"w", &w}, {"b", b ? &*b : nullptr}, {"alpha", alpha.vec ? &*alpha.vec : nullptr}});
  py::array y = outs[0], mask = outs[1];
  std::optional<py::array> z;
  if (activation_needs_z(act)) z = outs[2];
  {
    const float *px = fptr(x), *pw = fptr(w), *pb = b ? fptr(*b) : nullptr, *pa = alpha.vec_ptr();
    float *py_ = fptr(y), *pz = z ? fptr(*z) : nullptr;
    uint8_t* pm = u8ptr(mask);
    py::gil_scoped_release release;
    dense_dropout_forward(py_, pm, pz, px, pw, pb, n, k, m, act, p, seed, step, stream, scale,
                          alpha.scalar, pa, offset, precision);
  }
  if (z) return py::make_tuple(y, mask, *z);
  return py::make_tuple(y, mask);
}

py::tuple dense_dropout_backward_py(py::handle dy_h, py::handle x_h, py::handle w_h,
                                    const std::string& activation, py::handle mask_h,
                                    py::handle p_h, py::handle y_h, py::handle z_h,
                                    py::handle alpha_h, bool scale, bool need_dx,
                                    py::handle out_h, py::handle update_h,
                                    py::handle precision_h) {
  const Activation act = parse_activation(activation);
  const Precision precision = precision_arg(precision_h);
  auto [dy, x, w, n, k, m] = dense_grad_inputs(dy_h, x_h, w_h);
  py::array mask = checked_mask(mask_h, n * m, "dy");
  const double p = p_arg(p_h);
  AlphaArg alpha = parse_alpha(act, alpha_h, m);
  std::optional<py::array> s = saved_activation_input(act, y_h, z_h, n, m, "dense_dropout_forward");
  auto [g, update] = backward_outputs(
      out_h, update_h, n, k, m, need_dx, act == Activation::prelu, w,
      {{"dy", &dy},
       {"x", &x},
       {"w", &w},
       {activation_needs_z(act) ? "z" : "y", s ? &*s : nullptr},
       {"mask", &mask},
       {"alpha", alpha.vec ? &*alpha.vec : nullptr}});
  {
    const float *pdy = fptr(dy), *px = fptr(x), *pw = fptr(w), *ps = s ? fptr(*s) : nullptr,
                *pa = alpha.vec_ptr();
    const uint8_t* pm = u8ptr(mask);
    float *pdx = g.dx_ptr(), *pdw = g.dw_ptr(), *pdb = fptr(g.db), *pdal = g.dalpha_ptr();
    const WeightUpdate* pu = update ? &*update : nullptr;
    py::gil_scoped_release release;
    dense_dropout_backward(pdx, pdw, pdb, pdal, pdy, px, pw, ps, pm, n, k, m, act, p, scale,
                           alpha.scalar, pa, pu, precision);
  }
  return g.result();
}

}  // namespace

void register_dropout(py::module_& m) {
  m.def("philox4x32", &philox4x32_py, py::arg("counter"), py::arg("key"),
        "Philox-4x32-10 of a 4-word counter and 2-word key (uint32 each): the 4 output words.");
  m.def("_dropout_keep_bits_at", &keep_bits_at_py, py::arg("c"), py::arg("p"), py::arg("seed"),
        py::arg("step"), py::arg("stream"),
        "Test hook: keep bits of elements 4c.. from the active ISA's vectorised Philox.");
  m.def("dropout_forward", &dropout_forward_py, py::arg("x"), py::arg("p"), py::arg("seed"),
        py::arg("step"), py::arg("stream") = 0, py::kw_only(), py::arg("scale") = true,
        py::arg("out") = py::none(), py::arg("offset") = 0,
        "(y, mask): each element of x dropped with probability p (kept ones scaled by 1/(1-p) "
        "when scale), the mask drawn from Philox(seed, step, stream) one bit per element.");
  m.def("dropout_backward", &dropout_backward_py, py::arg("dy"), py::arg("mask"), py::arg("p"),
        py::kw_only(), py::arg("scale") = true, py::arg("out") = py::none(),
        "dx: dy through the forward pass's mask (and its 1/(1-p) scale when scale).");
  m.def("dense_dropout_forward", &dense_dropout_forward_py, py::arg("x"), py::arg("w"),
        py::arg("b"), py::arg("activation"), py::arg("p"), py::arg("seed"), py::arg("step"),
        py::arg("stream") = 0, py::kw_only(), py::arg("alpha") = py::none(),
        py::arg("scale") = true, py::arg("offset") = 0, py::arg("out") = py::none(),
        py::arg("precision") = "fp32",
        "(y, mask), or (y, mask, z) for the activations whose backward needs z: "
        "dropout(f(x @ w + b)) in one kernel.");
  m.def("dense_dropout_backward", &dense_dropout_backward_py, py::arg("dy"), py::arg("x"),
        py::arg("w"), py::arg("activation"), py::arg("mask"), py::arg("p"), py::kw_only(),
        py::arg("y") = py::none(), py::arg("z") = py::none(), py::arg("alpha") = py::none(),
        py::arg("scale") = true, py::arg("need_dx") = true, py::arg("out") = py::none(),
        py::arg("update") = py::none(), py::arg("precision") = "fp32",
        "(dx, dw, db), plus dalpha for prelu: the backward of dense_dropout_forward.");
}

}  // namespace fastdl::bind
