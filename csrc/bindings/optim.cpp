// Bindings for the fused optimizer steps. Every buffer is updated in place, so each is
// checked (float32, 1-D, C-contiguous, writable, the parameters' length) and never
// converted: a converted copy would take the update and be thrown away.
// With grads=None a step kernel applies nothing and returns the prepared step
// (OptimizerStep, bindings/optimizer_step.h) to apply in pieces.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "bindings/checks.h"
#include "bindings/optimizer_step.h"
#include "fastdl/optim.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

// The flat buffers of one step, checked against params and against each other.
class StepBuffers {
 public:
  // grads None: the step is prepared, not applied (finish returns it).
  StepBuffers(py::handle params, py::handle grads) {
    add(checked_f32(params, "params", 1, "(the flat parameter buffer)", /*writable=*/true), "params");
    n_ = arrays_[0].shape(0);
    if (grads.is_none()) return;
    has_grads_ = true;
    add(checked_f32(grads, "grads", 1, "(the flat gradient buffer, or None to prepare the step)"),
        "grads");
    expect_dim(arrays_[1], "grads", 0, n_, "the length of params");
  }

  // Applies the step to the whole buffer (returns None), or returns it prepared.
  py::object finish(OptimizerStep step) {
    if (has_grads_) {
      const float* g = fptr(arrays_[1]);
      const long n = (long)n_;
      {
        py::gil_scoped_release release;
        step.apply(g, 0, n);
      }
      return py::none();  // with the GIL held again
    }
    PyOptimizerStep s{std::move(step), {}, {}};
    for (int i = 0; i < count_; ++i) {
      s.buffers.push_back(arrays_[i]);
      s.names.emplace_back(names_[i]);
    }
    return py::cast(std::move(s));
  }

  // A state buffer written in place; None is allowed when `optional`.
  float* state(py::handle h, const char* name, bool optional = false) {
    if (h.is_none()) {
      if (optional) return nullptr;
      throw py::type_error(std::string(name) + ": expected a float32 buffer of length " +
                           std::to_string(n_) + ", got None");
    }
    py::array a = checked_f32(h, name, 1, "(an optimizer state buffer)", /*writable=*/true);
    expect_dim(a, name, 0, n_, "the length of params");
    for (int i = 0; i < count_; ++i)
      if (overlaps(a, arrays_[i]))
        throw py::value_error(std::string(name) + ": shares memory with '" + names_[i] +
                              "'; every optimizer buffer must be separate");
    add(a, name);
    return fptr(a);
  }

  float* params() const { return fptr(arrays_[0]); }
  long n() const { return (long)n_; }

 private:
  static constexpr int kMax = 5;  // params, grads and at most three state buffers
  void add(py::array a, const char* name) {
    if (count_ == 1 && has_grads_ && overlaps(a, arrays_[0]))
      throw py::value_error("grads: shares memory with 'params'; every optimizer buffer must be separate");
    arrays_[count_] = std::move(a);
    names_[count_++] = name;
  }
  py::array arrays_[kMax];
  const char* names_[kMax] = {};
  int count_ = 0;
  py::ssize_t n_ = 0;
  bool has_grads_ = false;
};

// decay_segments: None (decay everywhere) or an int64 (S, 2) array of [start, stop).
struct Segments {
  std::optional<py::array> arr;
  DecayRanges ranges() const {
    if (!arr) return {};
    return {static_cast<const int64_t*>(arr->data()), (long)arr->shape(0)};
  }
};

// The 1-based step count of Adam and Adagrad (a C++ long).
long step_arg(py::handle h) {
  return (long)int_in_range(h, "step", 1, std::numeric_limits<long>::max());
}

Segments parse_segments(py::handle h) {
  Segments s;
  if (h.is_none()) return s;
  s.arr = checked_array(h, "decay_segments", 2, "of [start, stop) rows, shape (S, 2)", 'i', 8);
  expect_dim(*s.arr, "decay_segments", 1, 2, "one [start, stop) pair per row");
  return s;
}

py::object sgd_py(py::handle params, py::handle grads, py::handle momentum_buf, py::handle lr,
                  py::handle momentum, py::handle dampening, py::handle weight_decay, bool nesterov,
                  bool first_step, bool classic, py::handle l1, py::handle decay_segments) {
  SgdOptions o;
  o.lr = f32_arg(lr, "lr"), o.momentum = f32_arg(momentum, "momentum");
  o.dampening = f32_arg(dampening, "dampening"), o.weight_decay = f32_arg(weight_decay, "weight_decay");
  o.nesterov = nesterov, o.first_step = first_step, o.classic = classic, o.l1 = f32_arg(l1, "l1");
  StepBuffers b(params, grads);
  float* buf = b.state(momentum_buf, "momentum_buf", /*optional=*/true);
  const Segments seg = parse_segments(decay_segments);
  float* p = b.params();
  const long n = b.n();
  return b.finish(OptimizerStep::sgd(p, buf, n, o, seg.ranges()));
}

py::object adagrad_py(py::handle params, py::handle grads, py::handle sum_sq, py::handle lr,
                      py::handle step, py::handle lr_decay, py::handle weight_decay, py::handle eps,
                      py::handle l1, py::handle decay_segments) {
  AdagradOptions o;
  o.lr = f32_arg(lr, "lr"), o.step = step_arg(step), o.lr_decay = f32_arg(lr_decay, "lr_decay");
  o.weight_decay = f32_arg(weight_decay, "weight_decay"), o.eps = f32_arg(eps, "eps");
  o.l1 = f32_arg(l1, "l1");
  StepBuffers b(params, grads);
  float* s = b.state(sum_sq, "sum_sq");
  const Segments seg = parse_segments(decay_segments);
  float* p = b.params();
  const long n = b.n();
  return b.finish(OptimizerStep::adagrad(p, s, n, o, seg.ranges()));
}

py::object rmsprop_py(py::handle params, py::handle grads, py::handle square_avg, py::handle lr,
                      py::handle alpha, py::handle eps, py::handle weight_decay, py::handle momentum,
                      bool centered, py::handle momentum_buf, py::handle grad_avg, py::handle l1,
                      py::handle decay_segments) {
  RmspropOptions o;
  o.lr = f32_arg(lr, "lr"), o.alpha = f32_arg(alpha, "alpha"), o.eps = f32_arg(eps, "eps");
  o.weight_decay = f32_arg(weight_decay, "weight_decay"), o.momentum = f32_arg(momentum, "momentum");
  o.centered = centered, o.l1 = f32_arg(l1, "l1");
  StepBuffers b(params, grads);
  float* sq = b.state(square_avg, "square_avg");
  float* mb = b.state(momentum_buf, "momentum_buf", /*optional=*/true);
  float* ga = b.state(grad_avg, "grad_avg", /*optional=*/true);
  const Segments seg = parse_segments(decay_segments);
  float* p = b.params();
  const long n = b.n();
  return b.finish(OptimizerStep::rmsprop(p, sq, mb, ga, n, o, seg.ranges()));
}

py::object adadelta_py(py::handle params, py::handle grads, py::handle square_avg, py::handle acc_delta,
                       py::handle lr, py::handle rho, py::handle eps, py::handle weight_decay,
                       py::handle l1, py::handle decay_segments) {
  AdadeltaOptions o;
  o.lr = f32_arg(lr, "lr"), o.rho = f32_arg(rho, "rho"), o.eps = f32_arg(eps, "eps");
  o.weight_decay = f32_arg(weight_decay, "weight_decay"), o.l1 = f32_arg(l1, "l1");
  StepBuffers b(params, grads);
  float* sq = b.state(square_avg, "square_avg");
  float* acc = b.state(acc_delta, "acc_delta");
  const Segments seg = parse_segments(decay_segments);
  float* p = b.params();
  const long n = b.n();
  return b.finish(OptimizerStep::adadelta(p, sq, acc, n, o, seg.ranges()));
}

py::object adam_py(py::handle params, py::handle grads, py::handle exp_avg, py::handle exp_avg_sq,
                   py::handle lr, py::handle step, py::handle beta1, py::handle beta2, py::handle eps,
                   py::handle weight_decay, bool decoupled, py::handle l1, py::handle decay_segments) {
  AdamOptions o;
  o.lr = f32_arg(lr, "lr"), o.step = step_arg(step), o.beta1 = f32_arg(beta1, "beta1");
  o.beta2 = f32_arg(beta2, "beta2"), o.eps = f32_arg(eps, "eps");
  o.weight_decay = f32_arg(weight_decay, "weight_decay"), o.decoupled = decoupled, o.l1 = f32_arg(l1, "l1");
  StepBuffers b(params, grads);
  float* m = b.state(exp_avg, "exp_avg");
  float* v = b.state(exp_avg_sq, "exp_avg_sq");
  const Segments seg = parse_segments(decay_segments);
  float* p = b.params();
  const long n = b.n();
  return b.finish(OptimizerStep::adam(p, m, v, n, o, seg.ranges()));
}

// step.apply(grads, segments): the step over the [start, stop) rows of segments (sorted,
// disjoint) or over the whole buffer.
void apply_py(const PyOptimizerStep& s, py::handle grads_h, py::handle segments_h) {
  const long n = s.step.size();
  py::array grads = checked_f32(grads_h, "grads", 1, "(the flat gradient buffer)");
  expect_dim(grads, "grads", 0, n, "the length of the step's params");
  for (size_t i = 0; i < s.buffers.size(); ++i)
    if (overlaps(grads, s.buffers[i]))
      throw py::value_error("grads: shares memory with '" + s.names[i] +
                            "'; every optimizer buffer must be separate");
  std::optional<py::array> seg;
  const int64_t* r = nullptr;
  long count = 1;
  if (!segments_h.is_none()) {
    seg = checked_array(segments_h, "segments", 2, "of [start, stop) rows, shape (S, 2)", 'i', 8);
    expect_dim(*seg, "segments", 1, 2, "one [start, stop) pair per row");
    r = static_cast<const int64_t*>(seg->data());
    count = (long)seg->shape(0);
    for (long i = 0; i < count; ++i) {
      const int64_t a = r[2 * i], b = r[2 * i + 1], prev = i ? r[2 * i - 1] : 0;
      if (a < prev || b < a || b > n)
        throw py::value_error("segments: row " + std::to_string(i) + " is [" + std::to_string(a) +
                              ", " + std::to_string(b) + "); expected sorted, disjoint rows with " +
                              "0 <= start <= stop <= " + std::to_string(n) +
                              " (each element is updated at most once)");
    }
  }
  const float* g = fptr(grads);
  py::gil_scoped_release release;
  for (long i = 0; i < count; ++i) {
    const long a = r ? (long)r[2 * i] : 0, b = r ? (long)r[2 * i + 1] : n;
    s.step.apply(g + a, a, b);
  }
}

void max_norm_py(py::handle w_h, py::handle max_norm_h) {
  const float max_norm_value = f32_arg(max_norm_h, "max_norm");
  py::array w = checked_f32(w_h, "w", 2, "of shape (K, M), one column per unit", /*writable=*/true);
  float* pw = fptr(w);
  const long k = (long)w.shape(0), m = (long)w.shape(1);
  py::gil_scoped_release release;
  max_norm(pw, k, m, max_norm_value);
}

}  // namespace

// The options of optimizer `kind` from keyword arguments, checked by the kernels' own
// rules (check_options): for fastdl.optim's optimizers and the GPU steps, which check
// before any step rather than hold a copy of the rules.
void check_optimizer_options_py(const std::string& kind, const py::kwargs& kw) {
  auto f = [&](const char* name, float fallback) { return kw.contains(name) ? f32_arg(kw[name], name) : fallback; };
  auto flag = [&](const char* name) { return kw.contains(name) && py::bool_(kw[name]); };
  auto step = [&]() { return kw.contains("step") ? step_arg(kw["step"]) : 1L; };
  if (kind == "sgd") {
    SgdOptions o;
    o.lr = f("lr", o.lr), o.momentum = f("momentum", 0.0f), o.dampening = f("dampening", 0.0f);
    o.weight_decay = f("weight_decay", 0.0f), o.l1 = f("l1", 0.0f), o.nesterov = flag("nesterov");
    check_options(o);
  } else if (kind == "adagrad") {
    AdagradOptions o;
    o.lr = f("lr", o.lr), o.step = step(), o.lr_decay = f("lr_decay", 0.0f), o.eps = f("eps", o.eps);
    o.weight_decay = f("weight_decay", 0.0f), o.l1 = f("l1", 0.0f);
    check_options(o);
  } else if (kind == "rmsprop") {
    RmspropOptions o;
    o.lr = f("lr", o.lr), o.alpha = f("alpha", o.alpha), o.eps = f("eps", o.eps);
    o.momentum = f("momentum", 0.0f), o.weight_decay = f("weight_decay", 0.0f), o.l1 = f("l1", 0.0f);
    check_options(o);
  } else if (kind == "adadelta") {
    AdadeltaOptions o;
    o.lr = f("lr", o.lr), o.rho = f("rho", o.rho), o.eps = f("eps", o.eps);
    o.weight_decay = f("weight_decay", 0.0f), o.l1 = f("l1", 0.0f);
    check_options(o);
  } else if (kind == "adam") {
    AdamOptions o;
    o.lr = f("lr", o.lr), o.step = step(), o.beta1 = f("beta1", o.beta1), o.beta2 = f("beta2", o.beta2);
    o.eps = f("eps", o.eps), o.weight_decay = f("weight_decay", 0.0f), o.l1 = f("l1", 0.0f);
    check_options(o);
  } else {
    throw py::value_error("kind: expected 'sgd', 'adagrad', 'rmsprop', 'adadelta' or 'adam', got '" + kind + "'");
  }
}

void register_optim(py::module_& m) {
  m.def("check_optimizer_options", &check_optimizer_options_py, py::arg("kind"),
        "Raises ValueError/TypeError where the keyword hyperparameters of optimizer `kind` break "
        "the step kernels' rules (the same check every step runs).");
  py::class_<PyOptimizerStep>(m, "OptimizerStep",
                              "One optimizer step, prepared by a step kernel called with "
                              "grads=None, applied in pieces: dense_backward(..., update=step) "
                              "updates the layer's w as its gradient is computed, "
                              "step.apply(grads, segments) the rest.")
      .def("apply", &apply_py, py::arg("grads"), py::kw_only(), py::arg("segments") = py::none(),
           "Applies the step to the [start, stop) rows of segments (int64 (S, 2), sorted, "
           "disjoint; None: the whole buffer), reading their gradients from grads.")
      .def_property_readonly("size", [](const PyOptimizerStep& s) { return s.step.size(); },
                             "The number of parameters the step updates.")
      .def("__repr__", [](const PyOptimizerStep& s) {
        return "<fastdl OptimizerStep over " + std::to_string(s.step.size()) + " parameters>";
      });
  const auto segs = py::arg("decay_segments") = py::none();
  m.def("sgd_step", &sgd_py, py::arg("params"), py::arg("grads"), py::arg("momentum_buf"),
        py::kw_only(), py::arg("lr"), py::arg("momentum") = 0.0f, py::arg("dampening") = 0.0f,
        py::arg("weight_decay") = 0.0f, py::arg("nesterov") = false, py::arg("first_step") = false,
        py::arg("classic") = false, py::arg("l1") = 0.0f, segs,
        "SGD step in place (torch.optim.SGD; classic=True: v = mu*v - lr*g, theta += v) grads=None: returns the step prepared, not applied (OptimizerStep).");
  m.def("adagrad_step", &adagrad_py, py::arg("params"), py::arg("grads"), py::arg("sum_sq"),
        py::kw_only(), py::arg("lr"), py::arg("step"), py::arg("lr_decay") = 0.0f,
        py::arg("weight_decay") = 0.0f, py::arg("eps") = 1e-10f, py::arg("l1") = 0.0f, segs,
        "Adagrad step in place (torch.optim.Adagrad) grads=None: returns the step prepared, not applied (OptimizerStep).");
  m.def("rmsprop_step", &rmsprop_py, py::arg("params"), py::arg("grads"), py::arg("square_avg"),
        py::kw_only(), py::arg("lr"), py::arg("alpha") = 0.99f, py::arg("eps") = 1e-8f,
        py::arg("weight_decay") = 0.0f, py::arg("momentum") = 0.0f, py::arg("centered") = false,
        py::arg("momentum_buf") = py::none(), py::arg("grad_avg") = py::none(), py::arg("l1") = 0.0f,
        segs, "RMSprop step in place (torch.optim.RMSprop) grads=None: returns the step prepared, not applied (OptimizerStep).");
  m.def("adadelta_step", &adadelta_py, py::arg("params"), py::arg("grads"), py::arg("square_avg"),
        py::arg("acc_delta"), py::kw_only(), py::arg("lr") = 1.0f, py::arg("rho") = 0.9f,
        py::arg("eps") = 1e-6f, py::arg("weight_decay") = 0.0f, py::arg("l1") = 0.0f, segs,
        "Adadelta step in place (torch.optim.Adadelta) grads=None: returns the step prepared, not applied (OptimizerStep).");
  m.def("adam_step", &adam_py, py::arg("params"), py::arg("grads"), py::arg("exp_avg"),
        py::arg("exp_avg_sq"), py::kw_only(), py::arg("lr"), py::arg("step"),
        py::arg("beta1") = 0.9f, py::arg("beta2") = 0.999f, py::arg("eps") = 1e-8f,
        py::arg("weight_decay") = 0.0f, py::arg("decoupled") = false, py::arg("l1") = 0.0f, segs,
        "Adam step in place (torch.optim.Adam; decoupled=True is AdamW) grads=None: returns the step prepared, not applied (OptimizerStep).");
  m.def("max_norm_", &max_norm_py, py::arg("w"), py::arg("max_norm"),
        "Rescales each column of w (K, M) to L2 norm <= max_norm in place (torch.renorm).");
}

}  // namespace fastdl::bind
