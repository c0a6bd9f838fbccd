// Binding of fastdl::dense_stack_train: a DenseStack object checks every buffer once,
// when it is built, so that a training step checks only its batch (x and the targets)
// before releasing the GIL for the whole forward, loss and backward.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings/activation_args.h"
#include "bindings/checks.h"
#include "bindings/optimizer_step.h"
#include "bindings/precision_arg.h"
#include "fastdl/activation.h"
#include "fastdl/dense_stack.h"

namespace py = pybind11;

namespace fastdl::bind {

namespace {

struct NamedArray {
  std::string name;
  py::array array;
};

class PyDenseStack {
 public:
  PyDenseStack(const py::list& layers, const std::string& loss, py::handle dout,
               py::handle label_smoothing_h, py::handle precision)
      : precision_(precision_arg(precision)) {
    const double label_smoothing = finite_arg(label_smoothing_h, "label_smoothing");
    if (layers.empty()) throw py::value_error("layers: expected at least one layer, got none");
    if (loss == "softmax_cross_entropy") loss_.kind = StackLoss::softmax_ce;
    else if (loss == "mse") loss_.kind = StackLoss::mse;
    else if (loss == "binary_cross_entropy") loss_.kind = StackLoss::binary_cross_entropy;
    else
      throw py::value_error("loss: expected 'softmax_cross_entropy', 'mse' or "
                            "'binary_cross_entropy', got '" + loss + "'");
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
      throw py::value_error("label_smoothing: expected a value in [0, 1], got " +
                            scalar_str(label_smoothing_h));
    if (label_smoothing != 0.0 && loss_.kind != StackLoss::softmax_ce)
      throw py::value_error("label_smoothing: only softmax_cross_entropy takes it");
    loss_.label_smoothing = (float)label_smoothing;
    for (size_t i = 0; i < layers.size(); ++i) add_layer(i, layers[i]);
    const std::string dname = "dout";
    py::array d = checked_f32(dout, dname.c_str(), 2, "of shape (N, C)", /*writable=*/true);
    expect_dim(d, "dout", 0, n_, "N, the batch size of the layers' y");
    expect_dim(d, "dout", 1, layers_.back().m, "C, the last layer's outputs");
    loss_.dout = fptr(d);
    outputs_.push_back({dname, d});
    check_disjoint();
    for (const NamedArray& o : outputs_) output_ranges_.push_back(range_of(o.array));
  }

  // One training step's forward, loss and backward on the batch (x, target), each row's
  // loss weighted by sample_weight where given; with an update, each w stepped in its
  // backward (dw not written), the rest left to the caller.
  double train(py::handle x_h, py::handle target_h, py::handle weight_h, py::handle update_h,
               bool backward_if_nonfinite, py::handle step_h) {
    py::array x = checked_f32(x_h, "x", 2, "of shape (N, input features)");
    expect_dim(x, "x", 0, n_, "the batch size this DenseStack was built for");
    expect_dim(x, "x", 1, layers_[0].k, "the first layer's input features");
    py::array t = checked_target(target_h);
    std::optional<py::array> sw;
    if (!weight_h.is_none()) {
      sw = checked_f32(weight_h, "sample_weight", 1, "of shape (N,)");
      expect_dim(*sw, "sample_weight", 0, n_, "N, the batch size");
    }
    const ByteRange xr = range_of(x), tr = range_of(t);
    const ByteRange wr = sw ? range_of(*sw) : ByteRange{nullptr, nullptr};
    for (size_t i = 0; i < outputs_.size(); ++i) {
      if (xr.overlaps(output_ranges_[i]))
        throw py::value_error("x: shares memory with the stack's buffer " + outputs_[i].name +
                              ", which the step overwrites");
      if (tr.overlaps(output_ranges_[i]))
        throw py::value_error("target: shares memory with the stack's buffer " +
                              outputs_[i].name + ", which the step overwrites");
      if (wr.overlaps(output_ranges_[i]))
        throw py::value_error("sample_weight: shares memory with the stack's buffer " +
                              outputs_[i].name + ", which the step overwrites");
    }
    DenseStackLossArgs loss = loss_;
    loss.sample_weight = sw ? fptr(*sw) : nullptr;
    loss.labels32 = nullptr;
    loss.labels64 = nullptr;
    loss.target = nullptr;
    if (t.ndim() == 1) {
      if (t.itemsize() == 8) loss.labels64 = static_cast<const int64_t*>(t.data());
      else loss.labels32 = static_cast<const int32_t*>(t.data());
    } else {
      loss.target = fptr(t);
    }
    std::vector<WeightUpdate> updates;
    if (!update_h.is_none()) {
      // Nothing the step reads or writes may share memory with the part of the update's
      // buffers that stepping a w rewrites (weight_update skips that w itself).
      NamedArrays others = {{"x", &x}, {"target", &t}};
      if (sw) others.push_back({"sample_weight", &*sw});
      for (const NamedArray& a : inputs_) others.push_back({a.name.c_str(), &a.array});
      for (const NamedArray& a : outputs_) others.push_back({a.name.c_str(), &a.array});
      for (size_t at : weight_at_)
        updates.push_back(*weight_update(update_h, inputs_[at].array, others, /*keep_dw=*/false));
    }
    const OptimizerStep* step = nullptr;
    if (!step_h.is_none()) {
      if (!update_h.is_none())
        throw py::value_error("step: update= steps each w in its backward kernel and step= "
                              "the whole buffer after the backward; pass one of them");
      if (!py::isinstance<PyOptimizerStep>(step_h))
        throw py::type_error("step: expected an OptimizerStep (an optimizer step kernel "
                             "called with grads=None), got " + type_name(step_h));
      const PyOptimizerStep& s = step_h.cast<const PyOptimizerStep&>();
      // The step rewrites all of its buffers; the layers' w, b and alpha are its params
      // (dense_stack_train checks that they tile them), nothing else may touch them.
      // Byte ranges computed once: 30 arrays against 3 buffers every step.
      for (size_t i = 0; i < s.buffers.size(); ++i) {
        const ByteRange b = range_of(s.buffers[i]);
        auto refuse = [&](const std::string& name) {
          throw py::value_error(name + ": shares memory with the step's '" + s.names[i] +
                                "', which the step rewrites");
        };
        if (xr.overlaps(b)) refuse("x");
        if (tr.overlaps(b)) refuse("target");
        if (wr.overlaps(b)) refuse("sample_weight");
        for (size_t o = 0; o < outputs_.size(); ++o)
          if (output_ranges_[o].overlaps(b)) refuse(outputs_[o].name);
      }
      step = &s.step;
    }
    const float* px = fptr(x);
    py::gil_scoped_release release;
    return dense_stack_train(layers_.data(), (int)layers_.size(), n_, px, loss,
                             updates.empty() ? nullptr : updates.data(), backward_if_nonfinite,
                             step, precision_);
  }

  long batch_size() const { return n_; }
  std::string precision() const { return precision_name(precision_); }
  size_t num_layers() const { return layers_.size(); }

 private:
  // Labels (N,) int32/int64 in [0, C) or float32 (N, C) for softmax cross-entropy,
  // float32 (N, C) for the others. Labels are range-checked here, before anything runs.
  py::array checked_target(py::handle h) const {
    const long c = layers_.back().m;
    if (loss_.kind == StackLoss::softmax_ce && py::isinstance<py::array>(h) &&
        py::reinterpret_borrow<py::array>(h).ndim() == 1) {
      auto a = py::reinterpret_borrow<py::array>(h);
      const char kind = a.dtype().kind();
      const int size = (int)a.dtype().itemsize();
      if (kind != 'i' || (size != 4 && size != 8))
        throw py::type_error("target: expected int32 or int64 class labels, got dtype " +
                             std::string(py::str(a.dtype())));
      py::array t = checked_array(h, "target", 1, "of shape (N,)", 'i', size);
      expect_dim(t, "target", 0, n_, "N, the batch size");
      for (long i = 0; i < n_; ++i) {
        const long long v = size == 8 ? static_cast<const int64_t*>(t.data())[i]
                                      : static_cast<const int32_t*>(t.data())[i];
        if (v < 0 || v >= c)
          throw py::value_error("target: label " + std::to_string(v) + " at index " +
                                std::to_string(i) + " is outside [0, " + std::to_string(c) + ")");
      }
      return t;
    }
    py::array t = checked_f32(h, "target", 2,
                              loss_.kind == StackLoss::softmax_ce
                                  ? "of shape (N, C), or int labels of shape (N,)"
                                  : "of shape (N, C)");
    expect_dim(t, "target", 0, n_, "N, the batch size");
    expect_dim(t, "target", 1, c, "C, the last layer's outputs");
    return t;
  }

  // Layer i from its dict: w, b, activation, alpha, y, z, dx, dw, db, dalpha.
  void add_layer(size_t i, py::handle h) {
    if (!py::isinstance<py::dict>(h))
      throw py::type_error("layers[" + std::to_string(i) + "]: expected a dict, got " + type_name(h));
    auto d = py::reinterpret_borrow<py::dict>(h);
    const std::string at = "layers[" + std::to_string(i) + "].";
    static const char* const kKeys[] = {"w", "b", "activation", "alpha", "y", "z", "dx", "dw", "db", "dalpha"};
    for (auto item : d) {
      const std::string key = py::str(item.first);
      bool known = false;
      for (const char* k : kKeys) known = known || key == k;
      if (!known) throw py::value_error(at + key + ": unknown key (expected w, b, activation, alpha, "
                                        "y, z, dx, dw, db, dalpha)");
    }
    auto get = [&](const char* key) -> py::handle {
      return d.contains(key) ? py::handle(d[key]) : py::handle(py::none());
    };
    auto name = [&](const char* key) { return at + key; };
    DenseStackLayer l;
    const std::string wn = name("w");
    py::array w = checked_f32(get("w"), wn.c_str(), 2, "of shape (K, M)");
    l.k = (long)w.shape(0);
    l.m = (long)w.shape(1);
    if (i > 0 && l.k != layers_.back().m)
      throw py::value_error(wn + ": expected shape[0] == " + std::to_string(layers_.back().m) +
                            " (the previous layer's outputs), got shape " + shape_str(w));
    l.w = fptr(w);
    weight_at_.push_back(inputs_.size());
    inputs_.push_back({wn, w});
    if (!get("b").is_none()) {
      const std::string bn = name("b");
      py::array b = checked_f32(get("b"), bn.c_str(), 1, "of shape (M,)");
      expect_dim(b, bn.c_str(), 0, l.m, "M = w.shape[1]");
      l.b = fptr(b);
      inputs_.push_back({bn, b});
    }
    py::handle act_h = get("activation");
    if (!act_h.is_none() && !py::isinstance<py::str>(act_h))
      throw py::type_error(at + "activation: expected a string, got " + type_name(act_h));
    const std::string act_name = act_h.is_none() ? "linear" : act_h.cast<std::string>();
    // The shared parsers name "activation" and "alpha": say which layer's.
    AlphaArg alpha;
    try {
      l.act = parse_activation(act_name);
      alpha = parse_alpha(l.act, get("alpha"), l.m);
    } catch (const py::type_error& e) {
      throw py::type_error(at + e.what());
    } catch (const py::value_error& e) {
      throw py::value_error(at + e.what());
    } catch (const std::invalid_argument& e) {
      throw py::value_error(at + e.what());
    }
    l.alpha = alpha.scalar;
    if (alpha.vec) {
      l.alpha_vec = alpha.vec_ptr();
      inputs_.push_back({name("alpha"), *alpha.vec});
    }
    if (i == 0) {
      const std::string yn = name("y");
      py::array y = checked_f32(get("y"), yn.c_str(), 2, "of shape (N, M)", true);
      n_ = (long)y.shape(0);
      if (n_ < 1)
        throw py::value_error(yn + ": expected at least one row (the loss is a mean over the "
                              "batch), got shape " + shape_str(y));
    }
    // A buffer the step writes: float32, C-contiguous, writable, of exactly `shape`.
    auto out = [&](const char* key, std::vector<py::ssize_t> shape, const char* what,
                   bool required) -> float* {
      const std::string on = name(key);
      py::handle oh = get(key);
      if (oh.is_none()) {
        if (required) throw py::value_error(on + ": expected a float32 array " + what + ", got None");
        return nullptr;
      }
      py::array a = checked_f32(oh, on.c_str(), (int)shape.size(), what, /*writable=*/true);
      for (size_t dim = 0; dim < shape.size(); ++dim)
        expect_dim(a, on.c_str(), (int)dim, shape[dim],
                   std::string(what) + ", N = layers[0].y.shape[0], K, M = w.shape");
      outputs_.push_back({on, a});
      return fptr(a);
    };
    const bool needs_z = activation_needs_z(l.act);
    l.y = out("y", {n_, l.m}, "of shape (N, M)", true);
    // z is read only where the activation needs it (silu, gelu, prelu); elsewhere ignored.
    l.z = needs_z ? out("z", {n_, l.m}, "of shape (N, M)", true) : nullptr;
    l.dx = out("dx", {n_, l.k}, "of shape (N, K)", i > 0);
    l.dw = out("dw", {l.k, l.m}, "of shape (K, M)", true);
    l.db = out("db", {l.m}, "of shape (M,)", false);
    l.dalpha = l.act == Activation::prelu ? out("dalpha", {l.m}, "of shape (M,)", true) : nullptr;
    layers_.push_back(l);
  }

  // No buffer the step writes may share memory with another one or with a parameter.
  void check_disjoint() const {
    for (size_t a = 0; a < outputs_.size(); ++a) {
      for (size_t b = a + 1; b < outputs_.size(); ++b)
        if (overlaps(outputs_[a].array, outputs_[b].array))
          throw py::value_error(outputs_[a].name + ": shares memory with " + outputs_[b].name +
                                "; every buffer the step writes must be its own");
      for (const NamedArray& in : inputs_)
        if (overlaps(outputs_[a].array, in.array))
          throw py::value_error(outputs_[a].name + ": shares memory with " + in.name +
                                ", which the step reads");
    }
  }

  std::vector<DenseStackLayer> layers_;
  std::vector<NamedArray> inputs_;   // w, b, alpha: read by the step (and kept alive)
  std::vector<size_t> weight_at_;    // where each layer's w is in inputs_
  std::vector<NamedArray> outputs_;  // every buffer the step writes (and kept alive)
  std::vector<ByteRange> output_ranges_;  // their memory, for the per-step checks
  DenseStackLossArgs loss_;
  long n_ = 0;
  Precision precision_;
};

}  // namespace

void register_dense_stack(py::module_& m) {
  py::class_<PyDenseStack>(m, "DenseStack",
                           "Forward, loss and backward of a stack of dense layers in one call "
                           "(fastdl/dense_stack.h). Built once per batch size from the layers' "
                           "buffers, which it checks and keeps alive.")
      .def(py::init<const py::list&, const std::string&, py::handle, py::handle, py::handle>(),
           py::arg("layers"), py::kw_only(), py::arg("loss"), py::arg("dout"),
           py::arg("label_smoothing") = 0.0, py::arg("precision") = "fp32")
      .def("train", &PyDenseStack::train, py::arg("x"), py::arg("target"),
           py::arg("sample_weight") = py::none(), py::kw_only(),
           py::arg("update") = py::none(), py::arg("backward_if_nonfinite") = true,
           py::arg("step") = py::none(),
           "Runs the step on one batch and returns the mean loss; fills every layer's y "
           "(and z), dx, dw, db (and dalpha) and dout. sample_weight: float32 (N,) weights "
           "finite and >= 0, each row's loss times its weight, summed and divided by N "
           "(Keras's sum_over_batch_size). update: an OptimizerStep over the "
           "flat buffer the weights are views of; each w is then stepped inside its "
           "backward kernel and its dw is not written. step: an OptimizerStep over a flat "
           "buffer made of exactly the layers' w, b and alpha, applied whole after the "
           "backward, each parameter by the thread that read it in the forward pass "
           "(gradients are still written). backward_if_nonfinite=False: a loss that is not "
           "finite returns before the backward pass (and any update or step).")
      .def_property_readonly("batch_size", &PyDenseStack::batch_size,
                             "The batch size the stack's buffers were made for.")
      .def_property_readonly("precision", &PyDenseStack::precision,
                             "The GEMMs' precision: \"fp32\" or \"bf16\".")
      .def("__len__", &PyDenseStack::num_layers);
}

}  // namespace fastdl::bind
