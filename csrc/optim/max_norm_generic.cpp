// The max-norm constraint for the generic path.
#include <cmath>

#include "fastdl/runtime.h"
#include "optim/optim_isa.h"
#include "simd/vec_generic.h"

namespace fastdl::optim::generic {

using V = simd::VecGeneric;

#include "optim/max_norm.inl"

}  // namespace fastdl::optim::generic
