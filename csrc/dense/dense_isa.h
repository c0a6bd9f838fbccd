// Internal: per-ISA pieces of the dense layer.
#pragma once
#include "fastdl/activation.h"

namespace fastdl {

// dz (n, m) = dy * f'(s); db[j] = sum_i dz[i, j] (when db); dalpha[j] = sum_i dy[i, j] *
// min(z[i, j], 0) for prelu. dz may be null for linear (dz == dy then). Each column
// is reduced over rows in order, whatever the thread count.
struct DzArgs {
  float* dz; float* db; float* dalpha;
  const float* dy; const float* s;
  long n, m;
  Activation act; float alpha; const float* alpha_vec;
};

namespace avx512 { void dense_dz(const DzArgs& a); }
namespace avx2 { void dense_dz(const DzArgs& a); }
namespace generic { void dense_dz(const DzArgs& a); }

}  // namespace fastdl
