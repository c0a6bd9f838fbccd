// The max-norm constraint for the avx2 path.
#include <cmath>

#include "fastdl/runtime.h"
#include "optim/optim_isa.h"
#include "simd/vec_avx2.h"

namespace fastdl::optim::avx2 {

using V = simd::VecAvx2;

#include "optim/max_norm.inl"

}  // namespace fastdl::optim::avx2
