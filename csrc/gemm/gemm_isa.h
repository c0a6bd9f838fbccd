// Internal: the per-ISA entry points behind fastdl::sgemm and friends.
#pragma once
#include "fastdl/gemm.h"

namespace fastdl {

struct GemmArgs {
  long m, n, k;
  const float* A; long rsa, csa;
  const float* B; long rsb, csb;
  float* C; long ldc;
  bool accumulate;
  const GemmEpilogue* ep;
};

namespace avx512 { void sgemm(const GemmArgs& g); }
namespace avx2 { void sgemm(const GemmArgs& g); }
namespace generic { void sgemm(const GemmArgs& g); }

}  // namespace fastdl
