// Softmax cross-entropy, MSE and binary cross-entropy for the generic path.
#include <cmath>
#include <limits>

#include "fastdl/runtime.h"
#include "losses/losses_isa.h"
#include "simd/vec_generic.h"
#include "simd/vmath.h"

namespace fastdl::generic {

using V = simd::VecGeneric;

#include "losses/losses.inl"

}  // namespace fastdl::generic
