// Batch normalization over the batch, per feature (PyTorch's BatchNorm1d on (N, M) input).
// All arrays float32, row-major and contiguous. Shapes: x, y, dy, dx (n, m); every
// per-feature array (m,). gamma and beta may be null (scale 1, shift 0). Column sums
// are accumulated in fixed row chunks folded into double, so results do not depend on
// the thread count.
#pragma once

namespace fastdl {

// y = (x - mean) * invstd * gamma + beta with the batch mean and biased variance;
// save_mean, save_invstd = 1 / sqrt(var + eps) are what batchnorm_backward needs.
// running_mean / running_var (may be null) are updated in place as
// running = (1 - momentum) * running + momentum * batch_stat, with the unbiased variance.
// Throws std::invalid_argument for n < 2 (PyTorch's "Expected more than 1 value per
// channel when training"), before anything is written.
void batchnorm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                             float* running_var, const float* x, const float* gamma,
                             const float* beta, long n, long m, float momentum = 0.1f,
                             float eps = 1e-5f);

// y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, long n, long m,
                            float eps = 1e-5f);

// Gradients of batchnorm_forward_train given dy: dbeta = sum_i dy, dgamma = sum_i dy * xhat,
// dx = gamma * invstd * (dy - dbeta / n - xhat * dgamma / n), xhat = (x - mean) * invstd.
// dgamma / dbeta may be null to skip them (they are computed anyway for dx).
void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd,
                        long n, long m);

}  // namespace fastdl
