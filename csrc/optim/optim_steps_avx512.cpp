// The fused optimizer steps for the avx512 path.
#include "fastdl/runtime.h"
#include "optim/optim_isa.h"
#include "runtime/flush_denormals.h"
#include "simd/vec_avx512.h"

namespace fastdl::optim::avx512 {

using V = simd::VecAvx512;

#include "optim/optim_steps.inl"

}  // namespace fastdl::optim::avx512
