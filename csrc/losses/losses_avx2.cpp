// Softmax cross-entropy, MSE and binary cross-entropy for the avx2 path.
#include <cmath>
#include <limits>

#include "fastdl/runtime.h"
#include "losses/losses_isa.h"
#include "simd/vec_avx2.h"
#include "simd/vmath.h"

namespace fastdl::avx2 {

using V = simd::VecAvx2;

#include "losses/losses.inl"

}  // namespace fastdl::avx2
