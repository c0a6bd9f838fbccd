// The dropout passes for the avx512 path (see dropout_kernel.inl).
#include <cstring>

#include "dropout/dropout_isa.h"
#include "fastdl/runtime.h"
#include "simd/philox_avx512.h"
#include "simd/vec_avx512.h"

namespace fastdl::avx512 {

using V = simd::VecAvx512;
using P = simd::PhiloxAvx512;

#include "dropout/dropout_kernel.inl"

}  // namespace fastdl::avx512
