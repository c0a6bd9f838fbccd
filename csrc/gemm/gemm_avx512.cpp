// GEMM for the avx512 path (see gemm_kernel.inl for the algorithm).
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
#include "runtime/flush_denormals.h"
#include "runtime/scratch.h"
#include "simd/philox_avx512.h"
#include "simd/vec_avx512.h"

namespace fastdl::avx512 {

using P = simd::PhiloxAvx512;
using V = simd::VecAvx512;
// Tuning knobs (-DFASTDL_AVX512_MR=...): measured on a 2-core Xeon (AVX-512), 12/144/256
// beat 14-row tiles, KC 384/512 and software prefetch of B.
#ifndef FASTDL_AVX512_MR
#define FASTDL_AVX512_MR 12
#endif
constexpr int MR = FASTDL_AVX512_MR, NRV = 2;            // micro-tile: MR x (NRV * V::width)
#ifndef FASTDL_AVX512_MC
#define FASTDL_AVX512_MC 144
#define FASTDL_AVX512_KC 256
#endif
constexpr long MC = FASTDL_AVX512_MC, KC = FASTDL_AVX512_KC, NC = 4096;  // cache blocks (A in L2, B micro-panel in L1)

#include "gemm/gemm_kernel.inl"

}  // namespace fastdl::avx512
