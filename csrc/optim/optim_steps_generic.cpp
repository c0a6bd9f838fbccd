// The fused optimizer steps for the generic path.
#include "fastdl/runtime.h"
#include "optim/optim_isa.h"
#include "runtime/flush_denormals.h"
#include "simd/vec_generic.h"

namespace fastdl::optim::generic {

using V = simd::VecGeneric;

#include "optim/optim_steps.inl"

}  // namespace fastdl::optim::generic
