// Losses fused with their gradients: each call returns the loss (a mean, like PyTorch's
// reduction="mean") and writes the gradient of that mean with respect to its input.
// All arrays row-major and contiguous; the loss is accumulated in double and does not
// depend on the thread count.
//
// sample_weight (n,), where given, weighs each sample's loss as Keras 3's
// "sum_over_batch_size" reduction does: loss = sum_i w_i l_i / n (divided by the batch
// size, not by sum(w)), and each sample's gradient is scaled by w_i. Weights must be
// finite and >= 0; null is the unweighted loss, unchanged bit for bit.
#pragma once
#include <cstdint>

namespace fastdl {

// Throws std::invalid_argument naming the first weight of w (n,) that is negative or not
// finite, and its index. The losses call it before writing anything; a caller that
// writes other buffers before its loss (dense_stack_train) calls it first.
void check_sample_weight(const float* sample_weight, long n);

// Throws std::invalid_argument naming the first label of labels (n,) outside [0, c) and its
// index: the rule softmax_cross_entropy applies, for callers that check a whole dataset once.
void check_labels(const int64_t* labels, long n, long c);

// logits (n, c), labels (n,) in [0, c), dlogits (n, c), sample_weight (n,) or null.
// Cross-entropy of softmax(logits) against one-hot targets smoothed like PyTorch:
// q = (1 - s) * onehot + s / c for s = label_smoothing in [0, 1]; with weights w,
// loss = sum_i w_i l_i / n and dlogits_i = w_i (softmax(logits_i) - q_i) / n.
// Throws std::invalid_argument naming the first label outside [0, c) (and its
// position), or the first bad weight, before anything is written, and for n < 1, c < 1
// or s outside [0, 1].
double softmax_cross_entropy(float* dlogits, const float* logits, const int32_t* labels, long n,
                             long c, float label_smoothing = 0.0f,
                             const float* sample_weight = nullptr);
double softmax_cross_entropy(float* dlogits, const float* logits, const int64_t* labels, long n,
                             long c, float label_smoothing = 0.0f,
                             const float* sample_weight = nullptr);

// logits (n, c), target probabilities (n, c), dlogits (n, c), sample_weight (n,) or null.
// With q = (1 - s) * target + s / c, l_i = -sum_j q_ij log_softmax(logits)_ij,
// loss = sum_i w_i l_i / n and dlogits_i = w_i (softmax_i * sum_j q_ij - q_i) / n
// (rows of q need not sum to 1, as in PyTorch; w_i = 1 without weights).
double softmax_cross_entropy_probs(float* dlogits, const float* logits, const float* target,
                                   long n, long c, float label_smoothing = 0.0f,
                                   const float* sample_weight = nullptr);

// pred, target, dpred: size elements. loss = mean (pred - target)^2, dpred = 2 (pred - target) / size.
double mse(float* dpred, const float* pred, const float* target, long size);

// pred, target, dpred (n, c), sample_weight (n,) or null: each row is one sample, whose
// loss is the mean of its c squared errors. loss = sum_ij w_i (pred - target)_ij^2 / (n c),
// dpred_ij = 2 w_i (pred - target)_ij / (n c). Null weights: mse over n * c elements.
double mse(float* dpred, const float* pred, const float* target, long n, long c,
           const float* sample_weight);

// logits, target, dlogits: size elements. Binary cross-entropy of sigmoid(logits), in the
// stable form max(x, 0) - x t + log1p(exp(-|x|)); dlogits = (sigmoid(x) - t) / size.
double binary_cross_entropy(float* dlogits, const float* logits, const float* target, long size);

// logits, target, dlogits (n, c), sample_weight (n,) or null: as mse's row form, each
// row one sample whose loss is the mean of its c terms; loss = sum_ij w_i l_ij / (n c),
// dlogits_ij = w_i (sigmoid(x) - t)_ij / (n c).
double binary_cross_entropy(float* dlogits, const float* logits, const float* target, long n,
                            long c, const float* sample_weight);

}  // namespace fastdl
