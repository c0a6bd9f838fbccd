#include "fastdl/dense_stack.h"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "dense/owned_step.h"
#include "fastdl/losses.h"

namespace fastdl {

namespace {
double run_loss(const DenseStackLossArgs& a, const float* out, long n, long c) {
  switch (a.kind) {
    case StackLoss::softmax_ce:
      if (a.labels64)
        return softmax_cross_entropy(a.dout, out, a.labels64, n, c, a.label_smoothing, a.sample_weight);
      if (a.labels32)
        return softmax_cross_entropy(a.dout, out, a.labels32, n, c, a.label_smoothing, a.sample_weight);
      return softmax_cross_entropy_probs(a.dout, out, a.target, n, c, a.label_smoothing,
                                         a.sample_weight);
    case StackLoss::mse: return mse(a.dout, out, a.target, n, c, a.sample_weight);
    case StackLoss::binary_cross_entropy:
      return binary_cross_entropy(a.dout, out, a.target, n, c, a.sample_weight);
  }
  throw std::invalid_argument("dense_stack_train: unknown loss");
}
}  // namespace

double dense_stack_train(const DenseStackLayer* layers, int count, long n, const float* x,
                         const DenseStackLossArgs& loss, const WeightUpdate* updates,
                         bool backward_if_nonfinite, const OptimizerStep* step,
                         Precision precision) {
  if (count < 1) throw std::invalid_argument("dense_stack_train: no layers");
  if (updates && step)
    throw std::invalid_argument("dense_stack_train: updates and step are two ways to take "
                                "the optimizer step; pass one");
  // Planned (and checked) before anything runs.
  if (loss.sample_weight) check_sample_weight(loss.sample_weight, n);
  const int step_threads = step ? owned_step_threads(*step) : 0;
  const std::vector<OwnedBlock>* owned =
      step ? &plan_owned_step(*step, layers, count, n, step_threads, precision) : nullptr;
  for (int i = 0; i < count; ++i) {
    const DenseStackLayer& l = layers[i];
    dense_forward(l.y, l.z, i == 0 ? x : layers[i - 1].y, l.w, l.b, n, l.k, l.m, l.act, l.alpha,
                  l.alpha_vec, precision);
  }
  const DenseStackLayer& last = layers[count - 1];
  const double value = run_loss(loss, last.y, n, last.m);
  if (!backward_if_nonfinite && !std::isfinite(value)) return value;
  for (int i = count - 1; i >= 0; --i) {
    const DenseStackLayer& l = layers[i];
    const float* dy = i == count - 1 ? loss.dout : layers[i + 1].dx;
    // The derivative reads z where the activation needs it, y for the others.
    const float* s = activation_needs_z(l.act) ? l.z : l.y;
    const WeightUpdate* u = updates ? &updates[i] : nullptr;
    dense_backward(l.dx, u && !u->keep_dw ? nullptr : l.dw, l.db, l.dalpha, dy,
                   i == 0 ? x : layers[i - 1].y, l.w, s, n, l.k, l.m, l.act, l.alpha, l.alpha_vec, u,
                   precision);
  }
  if (step) apply_owned_step(*step, *owned, step_threads);
  return value;
}

}  // namespace fastdl
