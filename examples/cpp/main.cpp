// Trains a 2-16-1 MLP on XOR with fastdl's fused dense kernels, from C++ alone.
//
//   hidden = tanh(x @ w1 + b1)          fastdl::dense_forward (GEMM + bias + tanh fused)
//   logit  = hidden @ w2 + b2           fastdl::dense_forward (linear)
//   loss   = mean binary cross-entropy of sigmoid(logit) against the XOR labels
//
// The gradient of the loss and the Adam update are written out below (bce_with_logits,
// adam_update); the backward pass of each layer is fastdl::dense_backward.
// The program checks its own result: exit status 0 only when every XOR case is
// classified correctly and the loss fell below kTargetLoss.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include <fastdl/activation.h>
#include <fastdl/dense.h>
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

// One parameter tensor with its gradient and Adam's two moment buffers.
struct Param {
  std::vector<float> value, grad, m, v;
  explicit Param(long size) : value(size, 0.0f), grad(size, 0.0f), m(size, 0.0f), v(size, 0.0f) {}
};

// Mean binary cross-entropy of sigmoid(logit) against targets t (both (n,)), in the
// stable form max(z, 0) - z t + log(1 + exp(-|z|)). Writes dlogit = (sigmoid(z) - t) / n.
float bce_with_logits(const float* logit, const float* t, float* dlogit, long n) {
  double loss = 0.0;
  for (long i = 0; i < n; ++i) {
    const float z = logit[i];
    loss += std::fmax(z, 0.0f) - z * t[i] + std::log1p(std::exp(-std::fabs(z)));
    dlogit[i] = (1.0f / (1.0f + std::exp(-z)) - t[i]) / static_cast<float>(n);
  }
  return static_cast<float>(loss / n);
}

// Adam (Kingma & Ba; PyTorch's defaults beta1 0.9, beta2 0.999, eps 1e-8), step >= 1.
void adam_update(Param& p, int step, float lr) {
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  const float c1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float c2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  for (std::size_t i = 0; i < p.value.size(); ++i) {
    const float g = p.grad[i];
    p.m[i] = beta1 * p.m[i] + (1.0f - beta1) * g;
    p.v[i] = beta2 * p.v[i] + (1.0f - beta2) * g * g;
    p.value[i] -= lr * (p.m[i] / c1) / (std::sqrt(p.v[i] / c2) + eps);
  }
}

int run() {
  // Row-major (n, k) inputs and their XOR labels.
  const float x[kN * kIn] = {0, 0, 0, 1, 1, 0, 1, 1};
  const float t[kN] = {0, 1, 1, 0};

  // Weights are stored in-by-out, (k, m), like fastdl's Python API and Keras.
  Param w1(kIn * kHidden), b1(kHidden), w2(kHidden * kOut), b2(kOut);
  Rng rng{0x9E3779B97F4A7C15ULL};
  const float a1 = std::sqrt(6.0f / (kIn + kHidden)), a2 = std::sqrt(6.0f / (kHidden + kOut));
  for (float& v : w1.value) v = rng.uniform(a1);
  for (float& v : w2.value) v = rng.uniform(a2);

  std::vector<float> hidden(kN * kHidden), logit(kN * kOut), dlogit(kN * kOut),
      dhidden(kN * kHidden);
  std::printf("fastdl C++ example: isa=%s threads=%d\n", fastdl::isa_name(fastdl::active_isa()),
              fastdl::get_num_threads());

  float loss = 0.0f;
  for (int step = 1; step <= kSteps; ++step) {
    // Forward. tanh's backward works from y, so the pre-activation z is not kept (null).
    fastdl::dense_forward(hidden.data(), nullptr, x, w1.value.data(), b1.value.data(), kN, kIn,
                          kHidden, fastdl::Activation::tanh);
    fastdl::dense_forward(logit.data(), nullptr, hidden.data(), w2.value.data(),
                          b2.value.data(), kN, kHidden, kOut, fastdl::Activation::linear);
    loss = bce_with_logits(logit.data(), t, dlogit.data(), kN * kOut);

    // Backward: the output layer is linear (s unused); the hidden layer gets s = y.
    // dx of the first layer is not needed: null skips that GEMM.
    fastdl::dense_backward(dhidden.data(), w2.grad.data(), b2.grad.data(), nullptr,
                           dlogit.data(), hidden.data(), w2.value.data(), nullptr, kN, kHidden,
                           kOut, fastdl::Activation::linear);
    fastdl::dense_backward(nullptr, w1.grad.data(), b1.grad.data(), nullptr, dhidden.data(), x,
                           w1.value.data(), hidden.data(), kN, kIn, kHidden,
                           fastdl::Activation::tanh);

    for (Param* p : {&w1, &b1, &w2, &b2}) adam_update(*p, step, kLearningRate);
    if (step == 1 || step % 250 == 0) std::printf("step %4d  loss %.6f\n", step, loss);
  }

  // Evaluate with the trained weights.
  fastdl::dense_forward(hidden.data(), nullptr, x, w1.value.data(), b1.value.data(), kN, kIn,
                        kHidden, fastdl::Activation::tanh);
  fastdl::dense_forward(logit.data(), nullptr, hidden.data(), w2.value.data(), b2.value.data(),
                        kN, kHidden, kOut, fastdl::Activation::linear);
  loss = bce_with_logits(logit.data(), t, dlogit.data(), kN);
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
