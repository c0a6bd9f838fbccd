// The dropout passes for the generic path (see dropout_kernel.inl).
#include <cstring>

#include "dropout/dropout_isa.h"
#include "fastdl/runtime.h"
#include "simd/philox_generic.h"
#include "simd/vec_generic.h"

namespace fastdl::generic {

using V = simd::VecGeneric;
using P = simd::PhiloxGeneric;

#include "dropout/dropout_kernel.inl"

}  // namespace fastdl::generic
