#include "fastdl/dense.h"

#include "gemm/gemm_isa.h"
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
  if (n <= 0) {  // no rows: every sum is empty
    for (long j = 0; j < m; ++j) {
      if (db) db[j] = 0.0f;
      if (dalpha && act == Activation::prelu) dalpha[j] = 0.0f;
    }
    for (long i = 0; i < k * m; ++i) dw[i] = 0.0f;
    return;
  }
  // dz = dy * f'(s) is never stored: both GEMMs form it as they pack dy (GemmDz), and
  // the dw GEMM reduces db (and prelu's dalpha) in the same packing pass.
  const bool linear = act == Activation::linear;
  GemmDz dz;
  dz.s = linear ? nullptr : s;
  dz.act = act;
  dz.alpha = alpha;
  dz.alpha_vec = act == Activation::prelu ? alpha_vec : nullptr;
  dz.db = db;
  dz.dalpha = act == Activation::prelu ? dalpha : nullptr;
  // dw (k, m) = x^T (k, n) @ dz (n, m)
  GemmArgs gw{k, m, n, x, 1, k, dy, m, 1, dw, m, false, nullptr};
  if (k <= 0) {
    // No inputs, so no dw, but db still needs its pass: a one-row GEMM of zeros packs
    // dz and reduces it; its row of C is thrown away.
    static thread_local ScratchBuffer scratch;
    float* buf = scratch.get<float>((size_t)(n + m));
    for (long i = 0; i < n; ++i) buf[i] = 0.0f;
    gw = GemmArgs{1, m, n, buf, 1, 1, dy, m, 1, buf + n, m, false, nullptr};
  }
  gw.dz_b = &dz;
  sgemm(gw);
  // dx (n, k) = dz (n, m) @ w^T (m, k); no reductions on this side.
  if (dx) {
    GemmDz dz_a = dz;
    dz_a.db = dz_a.dalpha = nullptr;
    GemmArgs gx{n, k, m, dy, m, 1, w, 1, m, dx, k, false, nullptr};
    gx.dz_a = &dz_a;
    sgemm(gx);
  }
}

}  // namespace fastdl
