// GEMM for the generic path (see gemm_kernel.inl for the algorithm).
#include <cstdlib>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num() { return 0; }
static inline int omp_get_num_threads() { return 1; }
#endif

#include "dense/activation_ops.h"
#include "fastdl/runtime.h"
#include "gemm/gemm_isa.h"
#include "runtime/cache_size.h"
#include "runtime/flush_denormals.h"
#include "runtime/scratch.h"
#include "simd/philox_generic.h"
#include "simd/vec_generic.h"

namespace fastdl::generic {

using P = simd::PhiloxGeneric;
using V = simd::VecGeneric;
constexpr int MR = 4, NRV = 2;            // micro-tile: MR x (NRV * V::width)
constexpr long MC = 128, KC = 256, NC = 4096;  // cache blocks (A in L2, B micro-panel in L1)
constexpr bool kAPanelInL1 = false;  // B micro-panel (KC x NR) in L1, A block in L2
constexpr long kBPanelInL1MaxK = KC;     // (always: kAPanelInL1 is false)
constexpr long kDirectBMaxRows = 4 * MR;  // small M: read row-major B unpacked

#include "gemm/gemm_kernel.inl"

}  // namespace fastdl::generic
