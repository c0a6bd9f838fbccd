// Bindings for the fused losses: check, convert, release the GIL, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/outputs.h"
#include "fastdl/losses.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

// sample_weight: None, or float32 (N,) for a batch of n samples. Its values (finite,
// >= 0) are checked by the loss itself, before it writes anything.
std::optional<py::array> checked_weight(py::handle h, py::ssize_t n, const std::string& why) {
  if (h.is_none()) return std::nullopt;
  py::array w = checked_f32(h, "sample_weight", 1, "of per-sample weights, shape (N,)");
  expect_dim(w, "sample_weight", 0, n, why);
  return w;
}

const float* weight_ptr(const std::optional<py::array>& w) { return w ? fptr(*w) : nullptr; }

py::tuple softmax_cross_entropy_py(py::handle logits_h, py::handle target_h, py::handle label_smoothing_h,
                                   py::handle weight_h, py::handle out_h) {
  py::array logits = checked_f32(logits_h, "logits", 2, "of shape (N, C)");
  const py::ssize_t n = logits.shape(0), c = logits.shape(1);
  if (n < 1 || c < 1)
    throw py::value_error("logits: expected at least one row and one class (the loss is a mean "
                          "over the batch), got shape " + shape_str(logits));
  const double label_smoothing = finite_arg(label_smoothing_h, "label_smoothing");
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw py::value_error("label_smoothing: expected a value in [0, 1], got " + scalar_str(label_smoothing_h));
  // The target's dtype says which form it is: integer labels (N,) or probabilities (N, C).
  int label_bytes = 0;
  if (py::isinstance<py::array>(target_h)) {
    const py::dtype dt = py::reinterpret_borrow<py::array>(target_h).dtype();
    if (dt.kind() == 'i' && (dt.itemsize() == 4 || dt.itemsize() == 8)) label_bytes = (int)dt.itemsize();
    else if (!(dt.kind() == 'f' && dt.itemsize() == 4))
      throw py::type_error("target: expected int32/int64 class labels of shape (N,) or float32 "
                           "probabilities of shape (N, C), got dtype " + std::string(py::str(dt)));
  }
  py::array target = label_bytes
      ? checked_array(target_h, "target", 1, "of labels (N,)", 'i', label_bytes)
      : checked_f32(target_h, "target", 2, "of probabilities (N, C)");
  expect_dim(target, "target", 0, n, "N = logits.shape[0]");
  if (!label_bytes) expect_dim(target, "target", 1, c, "C = logits.shape[1]");
  const std::optional<py::array> weight = checked_weight(weight_h, n, "N = logits.shape[0]");
  py::array dlogits = output_array(out_h, {n, c}, {{"logits", &logits}, {"target", &target},
                                                   {"sample_weight", weight ? &*weight : nullptr}});
  double loss;
  {
    const float* px = fptr(logits);
    const void* pt = target.data();
    const float* pw = weight_ptr(weight);
    float* pd = fptr(dlogits);
    const float ls = (float)label_smoothing;
    py::gil_scoped_release release;
    if (label_bytes == 4)
      loss = softmax_cross_entropy(pd, px, static_cast<const int32_t*>(pt), n, c, ls, pw);
    else if (label_bytes == 8)
      loss = softmax_cross_entropy(pd, px, static_cast<const int64_t*>(pt), n, c, ls, pw);
    else loss = softmax_cross_entropy_probs(pd, px, static_cast<const float*>(pt), n, c, ls, pw);
  }
  return py::make_tuple(loss, dlogits);
}

// x of any rank and t of exactly its shape, both float32 C-contiguous and non-empty.
std::pair<py::array, py::array> elementwise_pair(py::handle x_h, py::handle t_h, const char* x_name) {
  const int ndim = py::isinstance<py::array>(x_h) ? (int)py::reinterpret_borrow<py::array>(x_h).ndim() : 1;
  py::array x = checked_f32(x_h, x_name, ndim, "of any shape");
  const std::string why = std::string("the shape of ") + x_name;
  py::array t = checked_f32(t_h, "target", ndim, ("of " + why).c_str());
  for (int d = 0; d < ndim; ++d) expect_dim(t, "target", d, x.shape(d), why);
  if (x.size() < 1)
    throw py::value_error(std::string(x_name) + ": the loss is a mean and needs at least one "
                          "element, got shape " + shape_str(x));
  return {x, t};
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// With sample_weight, x's first axis is the batch: n = shape[0] samples of c = size / n
// elements each (one element each for a 1-D x).
template <double (*Loss)(float*, const float*, const float*, long, long, const float*)>
py::tuple elementwise_py(py::handle x_h, py::handle t_h, py::handle weight_h, py::handle out_h,
                         const char* x_name) {
  auto [x, t] = elementwise_pair(x_h, t_h, x_name);
  if (!weight_h.is_none() && x.ndim() == 0)
    throw py::value_error(std::string("sample_weight: ") + x_name + " is a 0-D array, one "
                          "element and no batch axis to weigh; give it shape (N, ...)");
  const long size = (long)x.size();
  const long n = weight_h.is_none() ? size : (long)x.shape(0);
  const std::optional<py::array> weight =
      checked_weight(weight_h, n, std::string("N = ") + x_name + ".shape[0]");
  py::array grad = output_array(out_h, shape_of(x), {{x_name, &x}, {"target", &t},
                                                     {"sample_weight", weight ? &*weight : nullptr}});
  double loss;
  {
    const float *px = fptr(x), *pt = fptr(t);
    const float* pw = weight_ptr(weight);
    float* pg = fptr(grad);
    py::gil_scoped_release release;
    loss = Loss(pg, px, pt, n, size / n, pw);
  }
  return py::make_tuple(loss, grad);
}

}  // namespace

void register_losses(py::module_& m) {
  // The loss kernels' own checks, for whole datasets checked once before training (fit
  // refuses a bad label or weight before its first step, not when its batch comes).
  m.def("check_labels",
        [](py::handle labels_h, long classes) {
          py::array labels = checked_array(labels_h, "target", 1, "of labels (N,)", 'i', 8);
          if (classes < 1) throw py::value_error("classes: expected at least one class, got " + std::to_string(classes));
          const int64_t* p = static_cast<const int64_t*>(labels.data());
          const long n = (long)labels.shape(0);
          py::gil_scoped_release release;
          check_labels(p, n, classes);
        },
        py::arg("labels"), py::arg("classes"),
        "Raises ValueError naming the first int64 label outside [0, classes) and its index.");
  m.def("check_sample_weight",
        [](py::handle w_h) {
          py::array w = checked_f32(w_h, "sample_weight", 1, "of shape (N,)");
          const float* p = fptr(w);
          const long n = (long)w.shape(0);
          py::gil_scoped_release release;
          check_sample_weight(p, n);
        },
        py::arg("sample_weight"),
        "Raises ValueError naming the first weight that is negative or not finite, and its index.");
  m.def("softmax_cross_entropy", &softmax_cross_entropy_py, py::arg("logits"), py::arg("target"),
        py::kw_only(), py::arg("label_smoothing") = 0.0, py::arg("sample_weight") = py::none(),
        py::arg("out") = py::none(),
        "(loss, dlogits): mean softmax cross-entropy over the batch and its gradient; "
        "sample_weight (N,): sum_i w_i loss_i / N.");
  m.def("mse",
        [](py::handle p, py::handle t, py::handle w, py::handle out) {
          return elementwise_py<&mse>(p, t, w, out, "pred");
        },
        py::arg("pred"), py::arg("target"), py::kw_only(), py::arg("sample_weight") = py::none(),
        py::arg("out") = py::none(),
        "(loss, dpred): mean squared error over all elements; sample_weight (N,) weighs "
        "each sample (row along the first axis): sum_i w_i mean_j err_ij^2 / N.");
  m.def("binary_cross_entropy",
        [](py::handle x, py::handle t, py::handle w, py::handle out) {
          return elementwise_py<&binary_cross_entropy>(x, t, w, out, "logits");
        },
        py::arg("logits"), py::arg("target"), py::kw_only(), py::arg("sample_weight") = py::none(),
        py::arg("out") = py::none(),
        "(loss, dlogits): mean binary cross-entropy of sigmoid(logits), stable form; "
        "sample_weight (N,) as for mse.");
}

}  // namespace fastdl::bind
