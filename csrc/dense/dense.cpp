#include "fastdl/dense.h"

#include "dense/dense_isa.h"
#include "fastdl/gemm.h"
#include "fastdl/runtime.h"
#include "runtime/scratch.h"

namespace fastdl {

void dense_forward(float* y, float* z, const float* x, const float* w, const float* b, long n,
                   long k, long m, Activation act, float alpha, const float* alpha_vec) {
  GemmEpilogue ep;
  ep.bias = b;
  ep.act = act;
  ep.alpha = alpha;
  ep.alpha_vec = act == Activation::prelu ? alpha_vec : nullptr;
  ep.z = z;
  ep.ldz = m;
  // x (n, k) row-major, w (k, m) row-major.
  sgemm(n, m, k, x, k, 1, w, m, 1, y, m, false, &ep);
}


void dense_backward(float* dx, float* dw, float* db, float* dalpha, const float* dy,
                    const float* x, const float* w, const float* s, long n, long k, long m,
                    Activation act, float alpha, const float* alpha_vec) {
  static thread_local ScratchBuffer scratch;  // dz, per calling thread
  const bool linear = act == Activation::linear;
  float* dz = linear ? nullptr : scratch.get<float>((size_t)n * m > 0 ? (size_t)n * m : 1);
  DzArgs a{dz, db, act == Activation::prelu ? dalpha : nullptr, dy, linear ? nullptr : s,
           n, m, act, alpha, act == Activation::prelu ? alpha_vec : nullptr};
  if (n > 0 && m > 0) {
    switch (active_isa()) {
      case Isa::avx512: avx512::dense_dz(a); break;
      case Isa::avx2: avx2::dense_dz(a); break;
      case Isa::generic: generic::dense_dz(a); break;
    }
  } else {
    for (long j = 0; j < m; ++j) {
      if (db) db[j] = 0.0f;
      if (a.dalpha) a.dalpha[j] = 0.0f;
    }
  }
  const float* g = linear ? dy : dz;
  // dw (k, m) = x^T (k, n) @ dz (n, m)
  sgemm(k, m, n, x, 1, k, g, m, 1, dw, m);
  // dx (n, k) = dz (n, m) @ w^T (m, k)
  if (dx) sgemm(n, k, m, g, m, 1, w, 1, m, dx, k);
}

}  // namespace fastdl
