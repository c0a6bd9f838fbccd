// Internal: per-ISA pieces of the losses.
#pragma once
#include <cstdint>

namespace fastdl {

// One softmax cross-entropy call. Exactly one of labels (int32 when label_bytes == 4,
// else int64) and probs is set; labels are already range-checked. row_loss (n,)
// receives each row's loss; the caller sums them in order.
struct SoftmaxCeArgs {
  float* dlogits; double* row_loss;
  const float* logits; const void* labels; int label_bytes; const float* probs;
  long n, c; float smoothing;
};

// Elementwise losses work in fixed chunks of kLossChunk elements: partial[k] receives
// chunk k's sum of per-element losses, and grad = scale * (dl/dx) for each element.
constexpr long kLossChunk = 8192;
struct ElementwiseArgs {
  float* grad; double* partial;
  const float* x; const float* t;
  long size; float scale;
};

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
