#include "fastdl/gemm.h"

#include "fastdl/runtime.h"
#include "gemm/gemm_isa.h"

namespace fastdl {

void sgemm(long m, long n, long k, const float* A, long rsa, long csa, const float* B,
           long rsb, long csb, float* C, long ldc, bool accumulate, const GemmEpilogue* ep) {
  const GemmArgs g{m, n, k, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, ep};
  switch (active_isa()) {
    case Isa::avx512: avx512::sgemm(g); return;
    case Isa::avx2: avx2::sgemm(g); return;
    case Isa::generic: break;
  }
  generic::sgemm(g);
}

}  // namespace fastdl
