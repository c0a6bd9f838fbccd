// bf16 GEMM on AVX512-BF16's VDPBF16PS (see gemm_bf16_loops.inl for the algorithm).
// Compiled with -mavx512bf16 where the compiler has it (CMakeLists.txt defines
// FASTDL_HAVE_AVX512_BF16 then); run only where the selected path is "avx512_bf16" (fastdl/runtime.h).
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include "fastdl/bf16.h"
#include "gemm/gemm_isa.h"

#if defined(FASTDL_HAVE_AVX512_BF16)
#include <immintrin.h>

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num() { return 0; }
static inline int omp_get_num_threads() { return 1; }
#endif

#include "dense/activation_ops.h"
#include "fastdl/runtime.h"
#include "runtime/flush_denormals.h"
#include "runtime/scratch.h"
#include "simd/philox_avx512.h"
#include "simd/vec_avx512.h"

namespace fastdl::avx512_bf16 {

using P = simd::PhiloxAvx512;
using V = simd::VecAvx512;
constexpr int MR = 12, NRV = 2;  // 12 x 32 tiles: 24 accumulators, 2 B vectors, 1 broadcast
constexpr int NR = NRV * V::width;
constexpr int KW = 2;            // A panels hold pairs, one broadcast per VDPBF16PS
constexpr int kTileRows = MR;
// Blocking as the AMX path's (gemm_amx.cpp), with the fp32 AVX-512 path's MC and NC.
constexpr long MC = 144, KC = 256, NC = 768, KCB = 512;
constexpr long kABlockBytes = 8 << 20;
using bf16 = uint16_t;

#include "gemm/gemm_dpbf16_kernel.inl"
#include "gemm/gemm_bf16_loops.inl"

}  // namespace fastdl::avx512_bf16

#else  // the compiler cannot build the AVX512-BF16 path: cpu_supports says no

namespace fastdl::avx512_bf16 {
[[noreturn]] static void not_built() {
  throw std::logic_error("the AVX512-BF16 GEMM path was not compiled into this build");
}
void sgemm(const GemmArgs&) { not_built(); }
GemmBPart sgemm_b_part(const GemmArgs&, int) { not_built(); }
void round_to_bf16(float*, const float*, long) { not_built(); }
}  // namespace fastdl::avx512_bf16

#endif
