// bf16 GEMM on the AMX tile unit (see gemm_bf16_loops.inl for the algorithm). Compiled
// with -mamx-tile -mamx-bf16 -mavx512bf16 where the compiler has them (CMakeLists.txt
// defines FASTDL_HAVE_AMX then); run only where the selected path is "amx" (fastdl/runtime.h).
#include <algorithm>
#include <cstdint>
#include <new>
#include <stdexcept>

#include "fastdl/bf16.h"
#include "gemm/gemm_isa.h"

#if defined(FASTDL_HAVE_AMX)
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

namespace fastdl::amx {

using P = simd::PhiloxAvx512;
using V = simd::VecAvx512;
constexpr int MR = 16, NRV = 2;  // A panels of one tile's rows; B panels of two tiles' columns
constexpr int NR = NRV * V::width;
constexpr int KW = 32;           // an A tile row: 32 k of one row
constexpr int kTileRows = 32;    // a micro-kernel call: two A panels
// Blocking (gemm_bf16_loops.inl), sized for a Sapphire Rapids core (48 KiB L1d, 2 MiB
// L2): the tile unit's operands for one call, a 32 x KC chunk of A and a KC x 32 panel of
// B, fit in L1 at KC 256 and not at 512; 64 x NC of C and a KCB x NC block of B share L2.
constexpr long MC = 64, KC = 256, NC = 1024, KCB = 512;
constexpr long kABlockBytes = 8 << 20;  // A is packed for all of K in blocks of this size
using bf16 = uint16_t;

#include "gemm/gemm_amx_kernel.inl"
#include "gemm/gemm_bf16_loops.inl"

}  // namespace fastdl::amx

#else  // the compiler cannot build the AMX path: cpu_supports says no

namespace fastdl::amx {
[[noreturn]] static void not_built() {
  throw std::logic_error("the AMX GEMM path was not compiled into this build");
}
void sgemm(const GemmArgs&) { not_built(); }
GemmBPart sgemm_b_part(const GemmArgs&, int) { not_built(); }
void round_to_bf16(float*, const float*, long) { not_built(); }
}  // namespace fastdl::amx

#endif
