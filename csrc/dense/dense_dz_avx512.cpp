// The fused dz / db pass of the dense backward for the avx512 path.
#include "dense/activation_ops.h"
#include "dense/dense_isa.h"
#include "fastdl/runtime.h"
#include "simd/vec_avx512.h"

namespace fastdl::avx512 {

using V = simd::VecAvx512;

#include "dense/dense_dz.inl"

}  // namespace fastdl::avx512
