// The fused optimizer steps for the avx2 path.
#include "fastdl/runtime.h"
#include "optim/optim_isa.h"
#include "runtime/flush_denormals.h"
#include "simd/vec_avx2.h"

namespace fastdl::optim::avx2 {

using V = simd::VecAvx2;

#include "optim/optim_steps.inl"

}  // namespace fastdl::optim::avx2
