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
#include "runtime/cache_size.h"
#include "runtime/flush_denormals.h"
#include "runtime/scratch.h"
#include "simd/philox_avx512.h"
#include "simd/vec_avx512.h"

namespace fastdl::avx512 {

using P = simd::PhiloxAvx512;
using V = simd::VecAvx512;
// Tuning knobs (-DFASTDL_AVX512_MR=...; tools/gemm_tune.cpp times them), set for a
// core with 48 KiB L1d and 2 MiB L2 (Sapphire Rapids): 12 x 32 tiles, the fastest there
// of 12 x 32, 14 x 32, 8 x 48 and 6 x 64 (docs/benchmarks.md, "Measurement history").
// With the A micro-panel (12 x KC) held in L1 and B streaming from L2, KC can be 512
// (half the passes over C of KC 256) and the B block (KC x NC, 1.5 MiB) fits L2, which
// beats keeping B's micro-panel in L1 with KC 256 at large shapes.
// NC is the most; a smaller L2 gets narrower blocks (nc_step_for in gemm_kernel.inl).
#ifndef FASTDL_AVX512_MR
#define FASTDL_AVX512_MR 12
#endif
constexpr int MR = FASTDL_AVX512_MR, NRV = 2;            // micro-tile: MR x (NRV * V::width)
#ifndef FASTDL_AVX512_MC
#define FASTDL_AVX512_MC 144
#endif
#ifndef FASTDL_AVX512_KC
#define FASTDL_AVX512_KC 512
#endif
#ifndef FASTDL_AVX512_NC
#define FASTDL_AVX512_NC 768
#endif
constexpr long MC = FASTDL_AVX512_MC, KC = FASTDL_AVX512_KC, NC = FASTDL_AVX512_NC;
constexpr bool kAPanelInL1 = true;  // A micro-panel in L1, B block (KC x NC) in L2
// ...except for short K blocks, whose B micro-panel (K x 32 floats, 16 KiB at K 128)
// takes at most half of any AVX-512 core's L1 and sits there while the A panels stream:
// the weight gradients x^T @ dz, where K is the batch. There every A panel reuses the
// B micro-panel from L1, and the measured weight-gradient GEMMs and training steps
// gained (docs/benchmarks.md, "Measurement history").
constexpr long kBPanelInL1MaxK = 128;
// Small M: B is read in place rather than packed. Not when its row stride is a
// multiple of 1 KiB: its rows would then share a few L1 sets.
constexpr long kDirectBMaxRows = 12 * MR;

#include "gemm/gemm_kernel.inl"

}  // namespace fastdl::avx512
