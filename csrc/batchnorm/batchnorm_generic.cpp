// Batch normalization (train, eval, backward) for the generic path.
#include <cmath>
#include <vector>

#include "batchnorm/batchnorm_isa.h"
#include "fastdl/runtime.h"
#include "simd/vec_generic.h"

namespace fastdl::generic {

using V = simd::VecGeneric;

#include "batchnorm/batchnorm.inl"

}  // namespace fastdl::generic
