// Internal: per-ISA pieces of the losses.
#pragma once
#include <cstdint>

namespace fastdl {

// One softmax cross-entropy call. Exactly one of labels (int32 when label_bytes == 4,
// else int64) and probs is set; labels (and weights) are already checked. row_loss (n,)
// receives each row's loss, times its weight where weight (n,) is set; the caller sums
// them in order.
struct SoftmaxCeArgs {
  float* dlogits; double* row_loss;
  const float* logits; const void* labels; int label_bytes; const float* probs;
  long n, c; float smoothing;
  const float* weight = nullptr;
};

// Elementwise losses work in fixed chunks of kLossChunk elements: partial[k] receives
// chunk k's sum of per-element losses, and grad = (float)scale * (dl/dx) for each element.
// With weight (size / c rows of c elements) set, they work in chunks of
// weighted_chunk_rows(c) rows instead: partial[k] receives chunk k's sum over rows of
// weight[i] * (the row's sum of losses), and each element's grad is dl/dx times its
// row's weight times scale (exactly (float)scale for a weight of one). Either way the
// chunks do not depend on the thread count.
constexpr long kLossChunk = 8192;
struct ElementwiseArgs {
  float* grad; double* partial;
  const float* x; const float* t;
  long size; double scale;
  const float* weight = nullptr;
  long c = 0;
};

constexpr long weighted_chunk_rows(long c) { return c >= kLossChunk ? 1 : kLossChunk / c; }

namespace avx512 {
void softmax_ce(const SoftmaxCeArgs& a);
void mse(const ElementwiseArgs& a);
void bce(const ElementwiseArgs& a);
}  // namespace avx512
namespace avx2 {
void softmax_ce(const SoftmaxCeArgs& a);
void mse(const ElementwiseArgs& a);
void bce(const ElementwiseArgs& a);
}  // namespace avx2
namespace generic {
void softmax_ce(const SoftmaxCeArgs& a);
void mse(const ElementwiseArgs& a);
void bce(const ElementwiseArgs& a);
}  // namespace generic

}  // namespace fastdl
