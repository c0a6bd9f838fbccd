// Flush-to-zero and denormals-are-zero for the current thread, restored on scope exit.
//
// Why: optimizer state decays geometrically where a gradient stays exactly 0 (a dead
// ReLU unit, an unused class): Adam's m *= beta1 reaches the subnormal range after ~850
// steps, v after ~70,000, and x86 cores take a microcode assist on every subnormal
// operand, which makes such a step many times slower (docs/benchmarks.md, "Measurement
// history"). Flushing changes results only where a value is below 1.2e-38, far beneath
// anything that moves a float32 parameter. MXCSR is per thread, so the guard goes inside
// each OpenMP thread; it is a no-op off x86.
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
#define FASTDL_HAS_MXCSR 1
#endif

namespace fastdl {

#ifdef FASTDL_HAS_MXCSR
namespace mxcsr {
constexpr unsigned kFtz = 0x8000;  // flush subnormal results to zero
constexpr unsigned kDaz = 0x0040;  // read subnormal operands as zero
}  // namespace mxcsr
#endif

// Writing MXCSR (ldmxcsr) is microcoded and orders the FP pipeline, and the guards nest
// (a GEMM thread's tiles run the optimizer step, which flushes again): each guard writes
// it only when the mode actually changes. Reading it (stmxcsr) is cheap.
class FlushDenormals {
 public:
#ifdef FASTDL_HAS_MXCSR
  FlushDenormals() : saved_(_mm_getcsr()) {
    if (changes()) _mm_setcsr(saved_ | kFlush);
  }
  ~FlushDenormals() {
    if (changes()) _mm_setcsr(saved_);
  }
#else
  FlushDenormals() {}  // user-provided, so that a guard is not an "unused variable"
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#ifdef FASTDL_HAS_MXCSR
  static constexpr unsigned kFlush = mxcsr::kFtz | mxcsr::kDaz;
  bool changes() const { return (saved_ & kFlush) != kFlush; }
  unsigned saved_;
#endif
};

// Undoes FlushDenormals inside its scope when `active`: for code whose result must
// not depend on the flush, like dz = dy * f'(z) packed inside the GEMM (a subnormal
// positive z read as 0 would pick prelu's alpha instead of 1).
class ExactDenormals {
 public:
#ifdef FASTDL_HAS_MXCSR
  explicit ExactDenormals(bool active)
      : saved_(_mm_getcsr()), active_(active && (saved_ & (mxcsr::kFtz | mxcsr::kDaz))) {
    if (active_) _mm_setcsr(saved_ & ~(mxcsr::kFtz | mxcsr::kDaz));
  }
  ~ExactDenormals() {
    if (active_) _mm_setcsr(saved_);
  }
#else
  explicit ExactDenormals(bool) {}
#endif
  ExactDenormals(const ExactDenormals&) = delete;
  ExactDenormals& operator=(const ExactDenormals&) = delete;

 private:
#ifdef FASTDL_HAS_MXCSR
  unsigned saved_;
  bool active_;
#endif
};

}  // namespace fastdl
