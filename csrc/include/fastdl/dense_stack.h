// A stack of dense layers trained as one call: forward, loss and backward of a plain
// multilayer perceptron in C++, so that a small network's training step crosses from
// Python into the kernels once instead of once per kernel (784-64x4-10 at batch 32
// spends about a fifth of its step in those crossings; docs/network.md). Each layer runs
// exactly the kernels dense_forward / dense_backward run, in the same order, so the
// results are bit-identical to calling them one by one.
#pragma once
#include <cstdint>

#include "fastdl/activation.h"
#include "fastdl/dense.h"

namespace fastdl {

// One layer: y = f(x @ w + b) with x the previous layer's y (the stack's input for the
// first). Shapes as in fastdl/dense.h, for the stack's batch size n.
struct DenseStackLayer {
  const float* w = nullptr;  // (k, m)
  const float* b = nullptr;  // (m,) or null
  long k = 0, m = 0;
  Activation act = Activation::linear;
  float alpha = 0.0f;
  const float* alpha_vec = nullptr;  // prelu
  float* y = nullptr;                // (n, m)
  float* z = nullptr;                // (n, m) where activation_needs_z(act), else null
  float* dx = nullptr;               // (n, k), or null: nothing upstream needs it
  float* dw = nullptr;               // (k, m)
  float* db = nullptr;               // (m,) or null
  float* dalpha = nullptr;           // (m,) for prelu
};

enum class StackLoss { softmax_ce, mse, binary_cross_entropy };

// The loss on the last layer's y (n, c) and its gradient, written to dout (n, c).
// softmax_ce takes labels (int32 or int64 (n,)) or target probabilities (n, c); the
// others take target (n, c). sample_weight (n,), where set, weighs each row as the
// losses' sample_weight does (fastdl/losses.h; mse and binary_cross_entropy in their
// row form, each row one sample).
struct DenseStackLossArgs {
  StackLoss kind = StackLoss::softmax_ce;
  const int32_t* labels32 = nullptr;
  const int64_t* labels64 = nullptr;
  const float* target = nullptr;
  float label_smoothing = 0.0f;
  float* dout = nullptr;
  const float* sample_weight = nullptr;
};

// Runs forward, loss and backward over `count` layers for a batch x (n, layers[0].k):
// fills every layer's y (and z), dx, dw, db (and dalpha) and the loss's dout, and
// returns the loss. The optimizer step is the caller's, after -- or, with `updates`
// (one per layer), each layer's w is stepped inside its backward kernel
// (dense_backward's WeightUpdate; dw is then written only where keep_dw) and the caller
// steps the rest of the buffer -- or, with `step`, the whole step is taken here, after
// the backward (below). When the loss is not finite and backward_if_nonfinite is false,
// the backward pass (and every update) is skipped.
//
// `step`: an optimizer step over a flat buffer made of exactly the layers' parameters
// (each element some layer's w, b or alpha_vec, at any offsets; their gradients are the
// layers' dw, db, dalpha). Each element is updated by the thread that read it in this
// pass's forward GEMM (owner-computes, gemm_isa.h's sgemm_b_part): a layer too small to
// split over threads by the calling thread; the first layer of 784-64x4-10 at batch 32,
// whose forward splits K over two threads, by rows; a forward split by columns, by
// columns (with those columns' biases; other biases by the calling thread). The next
// step's forward (and the backward's dx, dense_backward) then finds its weights in its
// own core's cache instead of the other's (docs/network.md, "Performance notes"; the
// measurements in docs/benchmarks.md). The parameters come out bit for bit as from
// OptimizerStep::apply over the whole buffer after the pass. Not with `updates`.
// Throws std::invalid_argument, before anything runs, where the layers'
// parameters do not tile the step's buffer or a trained parameter has no gradient buffer,
// or the loss's sample_weight holds a negative or non-finite weight.
//
// precision: the GEMMs' arithmetic, as dense_forward / dense_backward take it (bf16:
// operands rounded to bf16, everything else fp32).
double dense_stack_train(const DenseStackLayer* layers, int count, long n, const float* x,
                         const DenseStackLossArgs& loss, const WeightUpdate* updates = nullptr,
                         bool backward_if_nonfinite = true, const OptimizerStep* step = nullptr,
                         Precision precision = Precision::fp32);

}  // namespace fastdl
