// Batch normalization (train, eval, backward) for the avx2 path.
#include <cmath>
#include <vector>

#include "batchnorm/batchnorm_isa.h"
#include "fastdl/runtime.h"
#include "simd/vec_avx2.h"

namespace fastdl::avx2 {

using V = simd::VecAvx2;

#include "batchnorm/batchnorm.inl"

}  // namespace fastdl::avx2
