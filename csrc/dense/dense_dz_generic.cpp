// The fused dz / db pass of the dense backward for the generic path.
#include "dense/activation_ops.h"
#include "dense/dense_isa.h"
#include "fastdl/runtime.h"
#include "simd/vec_generic.h"

namespace fastdl::generic {

using V = simd::VecGeneric;

#include "dense/dense_dz.inl"

}  // namespace fastdl::generic
