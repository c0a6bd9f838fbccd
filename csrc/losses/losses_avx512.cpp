// Softmax cross-entropy, MSE and binary cross-entropy for the avx512 path.
#include <cmath>
#include <limits>

#include "fastdl/runtime.h"
#include "losses/losses_isa.h"
#include "simd/vec_avx512.h"
#include "simd/vmath.h"

namespace fastdl::avx512 {

using V = simd::VecAvx512;

#include "losses/losses.inl"

}  // namespace fastdl::avx512
