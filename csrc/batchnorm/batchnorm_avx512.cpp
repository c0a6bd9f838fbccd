// Batch normalization (train, eval, backward) for the avx512 path.
#include <cmath>
#include <vector>

#include "batchnorm/batchnorm_isa.h"
#include "fastdl/runtime.h"
#include "simd/vec_avx512.h"

namespace fastdl::avx512 {

using V = simd::VecAvx512;

#include "batchnorm/batchnorm.inl"

}  // namespace fastdl::avx512
