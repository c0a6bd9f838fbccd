#include "fastdl/losses.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "fastdl/runtime.h"
#include "losses/losses_isa.h"

namespace fastdl {

namespace {

void check_sizes(long n, long c, float label_smoothing) {
  if (n < 1)
    throw std::invalid_argument("softmax_cross_entropy: the loss is a mean over the batch and needs "
                                "at least one row, got n = " + std::to_string(n));
  if (c < 1)
    throw std::invalid_argument("softmax_cross_entropy: needs at least one class, got c = " +
                                std::to_string(c));
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    throw std::invalid_argument("label_smoothing must be in [0, 1], got " +
                                std::to_string(label_smoothing));
}

// The first label outside [0, c) is an error, found before anything is written.
template <class Label>
void check_labels(const Label* labels, long n, long c) {
  for (long i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= c)
      throw std::invalid_argument("target: label " + std::to_string((long long)labels[i]) +
                                  " at index " + std::to_string(i) + " is outside [0, " +
                                  std::to_string(c) + ") for logits with " + std::to_string(c) +
                                  " classes");
}

double run_softmax_ce(SoftmaxCeArgs a) {
  std::vector<double> row_loss((size_t)a.n);
  a.row_loss = row_loss.data();
  switch (active_isa()) {
    case Isa::avx512: avx512::softmax_ce(a); break;
    case Isa::avx2: avx2::softmax_ce(a); break;
    case Isa::generic: generic::softmax_ce(a); break;
  }
  double total = 0.0;
  for (double l : row_loss) total += l;
  return total / (double)a.n;
}

template <class Label>
double softmax_ce_labels(float* dlogits, const float* logits, const Label* labels, long n, long c,
                         float label_smoothing) {
  check_sizes(n, c, label_smoothing);
  check_labels(labels, n, c);
  return run_softmax_ce({dlogits, nullptr, logits, labels, (int)sizeof(Label), nullptr, n, c,
                         label_smoothing});
}

template <class Run>
double run_elementwise(float* grad, const float* x, const float* t, long size, float scale,
                       const char* what, Run run) {
  if (size < 1)
    throw std::invalid_argument(std::string(what) + ": the loss is a mean and needs at least one "
                                "element, got an empty input");
  std::vector<double> partial((size_t)((size + kLossChunk - 1) / kLossChunk));
  run(ElementwiseArgs{grad, partial.data(), x, t, size, scale});
  double total = 0.0;
  for (double p : partial) total += p;
  return total / (double)size;
}

}  // namespace

double softmax_cross_entropy(float* dlogits, const float* logits, const int32_t* labels, long n,
                             long c, float label_smoothing) {
  return softmax_ce_labels(dlogits, logits, labels, n, c, label_smoothing);
}

double softmax_cross_entropy(float* dlogits, const float* logits, const int64_t* labels, long n,
                             long c, float label_smoothing) {
  return softmax_ce_labels(dlogits, logits, labels, n, c, label_smoothing);
}

double softmax_cross_entropy_probs(float* dlogits, const float* logits, const float* target,
                                   long n, long c, float label_smoothing) {
  check_sizes(n, c, label_smoothing);
  return run_softmax_ce({dlogits, nullptr, logits, nullptr, 0, target, n, c, label_smoothing});
}

double mse(float* dpred, const float* pred, const float* target, long size) {
  return run_elementwise(dpred, pred, target, size, (float)(2.0 / (double)size), "mse",
                         [](const ElementwiseArgs& a) {
                           switch (active_isa()) {
                             case Isa::avx512: avx512::mse(a); break;
                             case Isa::avx2: avx2::mse(a); break;
                             case Isa::generic: generic::mse(a); break;
                           }
                         });
}

double binary_cross_entropy(float* dlogits, const float* logits, const float* target, long size) {
  return run_elementwise(dlogits, logits, target, size, (float)(1.0 / (double)size),
                         "binary_cross_entropy", [](const ElementwiseArgs& a) {
                           switch (active_isa()) {
                             case Isa::avx512: avx512::bce(a); break;
                             case Isa::avx2: avx2::bce(a); break;
                             case Isa::generic: generic::bce(a); break;
                           }
                         });
}

}  // namespace fastdl
