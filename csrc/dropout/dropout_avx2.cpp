// The dropout passes for the avx2 path (see dropout_kernel.inl).
#include <cstring>

#include "dropout/dropout_isa.h"
#include "fastdl/runtime.h"
#include "simd/philox_avx2.h"
#include "simd/vec_avx2.h"

namespace fastdl::avx2 {

using V = simd::VecAvx2;
using P = simd::PhiloxAvx2;

#include "dropout/dropout_kernel.inl"

}  // namespace fastdl::avx2
