// Losses fused with their gradients: each call returns the loss (a mean, like PyTorch's
// reduction="mean") and writes the gradient of that mean with respect to its input.
// All arrays row-major and contiguous; the loss is accumulated in double and does not
// depend on the thread count.
#pragma once
#include <cstdint>

namespace fastdl {

// logits (n, c), labels (n,) in [0, c), dlogits (n, c). Cross-entropy of softmax(logits)
// against one-hot targets smoothed like PyTorch: q = (1 - s) * onehot + s / c for
// s = label_smoothing in [0, 1]. dlogits = (softmax(logits) - q) / n.
// Throws std::invalid_argument naming the first label outside [0, c) (and its
// position) before anything is written, and for n < 1, c < 1 or s outside [0, 1].
double softmax_cross_entropy(float* dlogits, const float* logits, const int32_t* labels, long n,
                             long c, float label_smoothing = 0.0f);
double softmax_cross_entropy(float* dlogits, const float* logits, const int64_t* labels, long n,
                             long c, float label_smoothing = 0.0f);

// logits (n, c), target probabilities (n, c), dlogits (n, c). With q = (1 - s) * target + s / c,
// loss = mean_i -sum_j q_ij log_softmax(logits)_ij and dlogits = (softmax * sum_j q_ij - q) / n
// (rows of q need not sum to 1, as in PyTorch).
double softmax_cross_entropy_probs(float* dlogits, const float* logits, const float* target,
                                   long n, long c, float label_smoothing = 0.0f);

// pred, target, dpred: size elements. loss = mean (pred - target)^2, dpred = 2 (pred - target) / size.
double mse(float* dpred, const float* pred, const float* target, long size);

// logits, target, dlogits: size elements. Binary cross-entropy of sigmoid(logits), in the
// stable form max(x, 0) - x t + log1p(exp(-|x|)); dlogits = (sigmoid(x) - t) / size.
double binary_cross_entropy(float* dlogits, const float* logits, const float* target, long size);

}  // namespace fastdl
