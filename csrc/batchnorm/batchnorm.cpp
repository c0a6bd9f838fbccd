#include "fastdl/batchnorm.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "batchnorm/batchnorm_isa.h"
#include "fastdl/runtime.h"
#include "runtime/x86_paths.h"

namespace fastdl {

void batchnorm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                             float* running_var, const float* x, const float* gamma,
                             const float* beta, long n, long m, float momentum, float eps) {
  if (n < 2)
    throw std::invalid_argument("Expected more than 1 value per channel when training, got input "
                                "size (" + std::to_string(n) + ", " + std::to_string(m) + ")");
  if (m < 1) return;
  const BnTrainArgs a{y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta,
                      n, m, momentum, eps};
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::bn_train(a); break;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::bn_train(a); break;)
    case Isa::generic: generic::bn_train(a); break;
  }
}

void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, long n, long m,
                            float eps) {
  if (n < 1 || m < 1) return;
  std::vector<float> scale((size_t)m), shift((size_t)m);
  for (long j = 0; j < m; ++j) {
    scale[j] = (float)((gamma ? (double)gamma[j] : 1.0) / std::sqrt((double)running_var[j] + eps));
    shift[j] = beta ? beta[j] : 0.0f;
  }
  const BnAffineArgs a{y, x, running_mean, scale.data(), shift.data(), n, m};
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::bn_affine(a); break;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::bn_affine(a); break;)
    case Isa::generic: generic::bn_affine(a); break;
  }
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd,
                        long n, long m) {
  if (m < 1) return;
  if (n < 1) {
    for (long j = 0; j < m; ++j) {
      if (dgamma) dgamma[j] = 0.0f;
      if (dbeta) dbeta[j] = 0.0f;
    }
    return;
  }
  const BnBackwardArgs a{dx, dgamma, dbeta, dy, x, gamma, save_mean, save_invstd, n, m};
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::bn_backward(a); break;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::bn_backward(a); break;)
    case Isa::generic: generic::bn_backward(a); break;
  }
}

}  // namespace fastdl
