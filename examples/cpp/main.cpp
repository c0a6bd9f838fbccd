// Trains a 2-16-1 MLP on XOR with fastdl's fused dense kernels, from C++ alone.
//
//   hidden = tanh(x @ w1 + b1)          fastdl::dense_forward (GEMM + bias + tanh fused)
//   logit  = hidden @ w2 + b2           fastdl::dense_forward (linear)
//   loss   = mean binary cross-entropy of sigmoid(logit)   fastdl::binary_cross_entropy
//   backward of each layer                                 fastdl::dense_backward
//   Adam over all parameters at once                        fastdl::adam_step
//
// As in fastdl's Python network, every parameter lives in one flat buffer (w1, b1, w2,
// b2 back to back) with its gradient and Adam's moments in buffers of the same layout,
// so the optimizer is one call per step.
// The program checks its own result: exit status 0 only when every XOR case is
// classified correctly and the loss fell below kTargetLoss.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include <fastdl/activation.h>
#include <fastdl/dense.h>
#include <fastdl/losses.h>
#include <fastdl/optim.h>
#include <fastdl/runtime.h>

namespace {

constexpr long kN = 4;       // batch: the four XOR cases
constexpr long kIn = 2;      // inputs
constexpr long kHidden = 16; // hidden units
constexpr long kOut = 1;     // one logit
constexpr int kSteps = 1000;
constexpr float kLearningRate = 0.02f;
constexpr float kTargetLoss = 0.01f;

// A small deterministic generator (xorshift64*), so every platform starts from the
// same weights: uniform floats in [-a, a).
struct Rng {
  std::uint64_t s;
  float uniform(float a) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    const std::uint64_t r = s * 0x2545F4914F6CDD1DULL;
    return a * (2.0f * static_cast<float>(r >> 40) / static_cast<float>(1 << 24) - 1.0f);
  }
};

// Offsets of each tensor in the flat buffers.
constexpr long kW1 = 0, kB1 = kW1 + kIn * kHidden, kW2 = kB1 + kHidden, kB2 = kW2 + kHidden * kOut,
               kParams = kB2 + kOut;

int run() {
  // Row-major (n, k) inputs and their XOR labels.
  const float x[kN * kIn] = {0, 0, 0, 1, 1, 0, 1, 1};
  const float t[kN] = {0, 1, 1, 0};

  // Weights are stored in-by-out, (k, m), like fastdl's Python API and Keras; biases
  // start at zero, weights Glorot-uniform.
  std::vector<float> params(kParams, 0.0f), grads(kParams, 0.0f), exp_avg(kParams, 0.0f),
      exp_avg_sq(kParams, 0.0f);
  float *w1 = params.data() + kW1, *b1 = params.data() + kB1, *w2 = params.data() + kW2,
        *b2 = params.data() + kB2;
  Rng rng{0x9E3779B97F4A7C15ULL};
  const float a1 = std::sqrt(6.0f / (kIn + kHidden)), a2 = std::sqrt(6.0f / (kHidden + kOut));
  for (long i = 0; i < kIn * kHidden; ++i) w1[i] = rng.uniform(a1);
  for (long i = 0; i < kHidden * kOut; ++i) w2[i] = rng.uniform(a2);
  fastdl::AdamOptions adam;  // PyTorch's defaults: betas (0.9, 0.999), eps 1e-8
  adam.lr = kLearningRate;

  std::vector<float> hidden(kN * kHidden), logit(kN * kOut), dlogit(kN * kOut),
      dhidden(kN * kHidden);
  std::printf("fastdl C++ example: isa=%s threads=%d\n", fastdl::isa_name(fastdl::active_isa()),
              fastdl::get_num_threads());

  float loss = 0.0f;
  for (int step = 1; step <= kSteps; ++step) {
    // Forward. tanh's backward works from y, so the pre-activation z is not kept (null).
    fastdl::dense_forward(hidden.data(), nullptr, x, w1, b1, kN, kIn, kHidden,
                          fastdl::Activation::tanh);
    fastdl::dense_forward(logit.data(), nullptr, hidden.data(), w2, b2, kN, kHidden, kOut,
                          fastdl::Activation::linear);
    loss = static_cast<float>(
        fastdl::binary_cross_entropy(dlogit.data(), logit.data(), t, kN * kOut));

    // Backward: the output layer is linear (s unused); the hidden layer gets s = y.
    // dx of the first layer is not needed: null skips that GEMM.
    // The gradients land in their slices of the flat gradient buffer.
    fastdl::dense_backward(dhidden.data(), grads.data() + kW2, grads.data() + kB2, nullptr,
                           dlogit.data(), hidden.data(), w2, nullptr, kN, kHidden, kOut,
                           fastdl::Activation::linear);
    fastdl::dense_backward(nullptr, grads.data() + kW1, grads.data() + kB1, nullptr,
                           dhidden.data(), x, w1, hidden.data(), kN, kIn, kHidden,
                           fastdl::Activation::tanh);

    adam.step = step;
    fastdl::adam_step(params.data(), exp_avg.data(), exp_avg_sq.data(), grads.data(), kParams,
                      adam);
    if (step == 1 || step % 250 == 0) std::printf("step %4d  loss %.6f\n", step, loss);
  }

  // Evaluate with the trained weights.
  fastdl::dense_forward(hidden.data(), nullptr, x, w1, b1, kN, kIn, kHidden,
                        fastdl::Activation::tanh);
  fastdl::dense_forward(logit.data(), nullptr, hidden.data(), w2, b2, kN, kHidden, kOut,
                        fastdl::Activation::linear);
  loss = static_cast<float>(fastdl::binary_cross_entropy(dlogit.data(), logit.data(), t, kN));
  int correct = 0;
  for (long i = 0; i < kN; ++i) {
    const float p = 1.0f / (1.0f + std::exp(-logit[i]));
    const bool ok = (p > 0.5f) == (t[i] > 0.5f);
    correct += ok;
    std::printf("  %g xor %g = %g  predicted %.4f %s\n", x[2 * i], x[2 * i + 1], t[i], p,
                ok ? "ok" : "WRONG");
  }
  const bool passed = correct == kN && loss < kTargetLoss;
  std::printf("accuracy %d/%ld, loss %.6f (target < %g): %s\n", correct, kN, loss, kTargetLoss,
              passed ? "PASSED" : "FAILED");
  return passed ? 0 : 1;
}

}  // namespace

int main() {
  // The kernels report bad configuration (an unknown FASTDL_ISA, a thread count < 1)
  // with std::invalid_argument, and allocation failure with std::bad_alloc.
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xor_mlp: error: %s\n", e.what());
    return 2;
  }
}
