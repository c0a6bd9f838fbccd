// Internal: per-ISA pieces of batch normalization.
#pragma once

namespace fastdl {

struct BnTrainArgs {
  float* y; float* save_mean; float* save_invstd; float* running_mean; float* running_var;
  const float* x; const float* gamma; const float* beta;
  long n, m; float momentum, eps;
};

struct BnBackwardArgs {
  float* dx; float* dgamma; float* dbeta;
  const float* dy; const float* x; const float* gamma; const float* mean; const float* invstd;
  long n, m;
};

// y = (x - center) * scale + shift, per column; rows split across threads.
struct BnAffineArgs {
  float* y; const float* x; const float* center; const float* scale; const float* shift;
  long n, m;
};

namespace avx512 {
void bn_train(const BnTrainArgs& a);
void bn_backward(const BnBackwardArgs& a);
void bn_affine(const BnAffineArgs& a);
}  // namespace avx512
namespace avx2 {
void bn_train(const BnTrainArgs& a);
void bn_backward(const BnBackwardArgs& a);
void bn_affine(const BnAffineArgs& a);
}  // namespace avx2
namespace generic {
void bn_train(const BnTrainArgs& a);
void bn_backward(const BnBackwardArgs& a);
void bn_affine(const BnAffineArgs& a);
}  // namespace generic

}  // namespace fastdl
