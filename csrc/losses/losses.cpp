#include "fastdl/losses.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastdl/runtime.h"
#include "losses/losses_isa.h"
#include "runtime/x86_paths.h"

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

std::string float_str(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", (double)v);
  return buf;
}

double run_softmax_ce(SoftmaxCeArgs a) {
  std::vector<double> row_loss((size_t)a.n);
  a.row_loss = row_loss.data();
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::softmax_ce(a); break;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::softmax_ce(a); break;)
    case Isa::generic: generic::softmax_ce(a); break;
  }
  double total = 0.0;
  for (double l : row_loss) total += l;
  return total / (double)a.n;
}

template <class Label>
double softmax_ce_labels(float* dlogits, const float* logits, const Label* labels, long n, long c,
                         float label_smoothing, const float* sample_weight) {
  check_sizes(n, c, label_smoothing);
  check_labels(labels, n, c);
  if (sample_weight) check_sample_weight(sample_weight, n);
  return run_softmax_ce({dlogits, nullptr, logits, labels, (int)sizeof(Label), nullptr, n, c,
                         label_smoothing, sample_weight});
}

// size elements, or n rows of c with sample_weight (n,) set; the loss is the partials'
// sum over size either way (sum_i w_i * row mean / n = sum_ij w_i l_ij / (n c)).
template <class Run>
double run_elementwise(float* grad, const float* x, const float* t, long n, long c,
                       const float* sample_weight, double scale_times_size, const char* what,
                       Run run) {
  if (n < 1 || c < 1)
    throw std::invalid_argument(std::string(what) + ": the loss is a mean and needs at least one "
                                "element, got an empty input");
  if (sample_weight) check_sample_weight(sample_weight, n);
  const long size = n * c;
  const long chunks = sample_weight ? (n + weighted_chunk_rows(c) - 1) / weighted_chunk_rows(c)
                                    : (size + kLossChunk - 1) / kLossChunk;
  std::vector<double> partial((size_t)chunks);
  run(ElementwiseArgs{grad, partial.data(), x, t, size, scale_times_size / (double)size,
                      sample_weight, c});
  double total = 0.0;
  for (double p : partial) total += p;
  return total / (double)size;
}

void dispatch_mse(const ElementwiseArgs& a) {
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::mse(a); break;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::mse(a); break;)
    case Isa::generic: generic::mse(a); break;
  }
}

void dispatch_bce(const ElementwiseArgs& a) {
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::bce(a); break;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::bce(a); break;)
    case Isa::generic: generic::bce(a); break;
  }
}

}  // namespace

void check_labels(const int64_t* labels, long n, long c) { check_labels<int64_t>(labels, n, c); }

void check_sample_weight(const float* sample_weight, long n) {
  // A branch-free scan of the bits (which the compiler vectorizes, as it does not float
  // comparisons) for the usual case, all good: finite and >= 0 is sign clear and exponent
  // not all ones, or -0. The first bad weight is looked for only when there is one.
  uint32_t bad = 0;
  for (long i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, sample_weight + i, sizeof bits);
    bad |= (uint32_t)(bits >= 0x7f800000u) & (uint32_t)(bits != 0x80000000u);
  }
  if (!bad) return;
  for (long i = 0; i < n; ++i) {
    const float w = sample_weight[i];
    if (!(std::isfinite(w) && w >= 0.0f))
      throw std::invalid_argument("sample_weight: weight " + float_str(w) + " at index " +
                                  std::to_string(i) + " is " +
                                  (std::isfinite(w) ? "negative" : "not finite") +
                                  "; sample weights must be finite and >= 0");
  }
}

double softmax_cross_entropy(float* dlogits, const float* logits, const int32_t* labels, long n,
                             long c, float label_smoothing, const float* sample_weight) {
  return softmax_ce_labels(dlogits, logits, labels, n, c, label_smoothing, sample_weight);
}

double softmax_cross_entropy(float* dlogits, const float* logits, const int64_t* labels, long n,
                             long c, float label_smoothing, const float* sample_weight) {
  return softmax_ce_labels(dlogits, logits, labels, n, c, label_smoothing, sample_weight);
}

double softmax_cross_entropy_probs(float* dlogits, const float* logits, const float* target,
                                   long n, long c, float label_smoothing,
                                   const float* sample_weight) {
  check_sizes(n, c, label_smoothing);
  if (sample_weight) check_sample_weight(sample_weight, n);
  return run_softmax_ce({dlogits, nullptr, logits, nullptr, 0, target, n, c, label_smoothing,
                         sample_weight});
}

double mse(float* dpred, const float* pred, const float* target, long size) {
  return run_elementwise(dpred, pred, target, size, 1, nullptr, 2.0, "mse", dispatch_mse);
}

double mse(float* dpred, const float* pred, const float* target, long n, long c,
           const float* sample_weight) {
  return run_elementwise(dpred, pred, target, n, c, sample_weight, 2.0, "mse", dispatch_mse);
}

double binary_cross_entropy(float* dlogits, const float* logits, const float* target, long size) {
  return run_elementwise(dlogits, logits, target, size, 1, nullptr, 1.0, "binary_cross_entropy",
                         dispatch_bce);
}

double binary_cross_entropy(float* dlogits, const float* logits, const float* target, long n,
                            long c, const float* sample_weight) {
  return run_elementwise(dlogits, logits, target, n, c, sample_weight, 1.0,
                         "binary_cross_entropy", dispatch_bce);
}

}  // namespace fastdl
