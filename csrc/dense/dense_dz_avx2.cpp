// The fused dz / db pass of the dense backward for the avx2 path.
#include "dense/activation_ops.h"
#include "dense/dense_isa.h"
#include "fastdl/runtime.h"
#include "simd/vec_avx2.h"

namespace fastdl::avx2 {

using V = simd::VecAvx2;

#include "dense/dense_dz.inl"

}  // namespace fastdl::avx2
