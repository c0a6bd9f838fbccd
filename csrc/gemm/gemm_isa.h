// Internal: the per-ISA entry points behind fastdl::sgemm and friends.
#pragma once
#include "fastdl/gemm.h"
#include "fastdl/precision.h"

namespace fastdl {

// An operand that is the dense layer's dz = dy * f'(s), formed as it is packed: the
// GEMM reads dy (and s, laid out as dy) and never sees a dz array in memory. Used by
// dense_backward for B of dw = x^T @ dz and A of dx = dz @ w^T; the operand must be
// row-major (unit column stride). Its columns are the layer's output units (alpha_vec
// is indexed by them). On B, the packing also reduces db[j] = sum_p dz(p, j) and, for
// prelu, dalpha[j] = sum_p dy(p, j) * min(s(p, j), 0), each column over p in order.
struct GemmDz {
  const float* s = nullptr;  // null: dz = dy (linear), still reducing db
  Activation act = Activation::linear;
  float alpha = 0.0f;
  const float* alpha_vec = nullptr;  // prelu
  float* db = nullptr;               // B only
  float* dalpha = nullptr;           // B only, prelu
};

struct GemmArgs {
  long m, n, k;
  const float* A; long rsa, csa;
  const float* B; long rsb, csb;
  float* C; long ldc;
  bool accumulate;
  const GemmEpilogue* ep;
  const GemmDz* dz_a = nullptr;  // A is dz (then ep must be null or a sink alone)
  const GemmDz* dz_b = nullptr;  // B is dz (then ep must be null or a sink alone)
  // bf16: A and B (dz after it is formed) rounded to bf16 as they are packed (fastdl/bf16.h).
  Precision precision = Precision::fp32;
};

// Below this many flops (2mnk) a GEMM runs on the calling thread: the fork and the
// split panels cost more than a second core gives back.
constexpr double kGemmParallelMinFlops = 4.0e5;

// sgemm with the internal options: dispatches on the active ISA.
void sgemm(const GemmArgs& g);

// The part of B that thread t (its number in an OpenMP team) reads when sgemm(g) runs now,
// outside any parallel region: rows [row0, row0 + rows) x columns [col0, col0 + cols),
// empty where t takes no part. shared: the rows of C are split, so every thread reads
// all of B. For a caller that wants each thread to update the part of a weight matrix it
// reads (owner-computes: dense_stack_train's optimizer step); the GEMM's own partition
// and this answer come from one function (plan_of), so they cannot drift apart.
struct GemmBPart {
  long row0 = 0, rows = 0, col0 = 0, cols = 0;
  bool shared = false;
};
GemmBPart sgemm_b_part(const GemmArgs& g, int t);

// The fp32 paths (gemm_kernel.inl): with Precision::bf16 they round the packed panels
// (the portable bf16 path). The bf16 paths (gemm_bf16_loops.inl) take Precision::bf16 only.
// round_to_bf16: dst = src rounded to bf16 (as floats) by the path's own conversion, the
// one its packing uses (test hook: fastdl._C._round_to_bf16).
namespace amx {
void sgemm(const GemmArgs& g);
GemmBPart sgemm_b_part(const GemmArgs& g, int t);
void round_to_bf16(float* dst, const float* src, long n);
}  // namespace amx
namespace avx512_bf16 {
void sgemm(const GemmArgs& g);
GemmBPart sgemm_b_part(const GemmArgs& g, int t);
void round_to_bf16(float* dst, const float* src, long n);
}  // namespace avx512_bf16
namespace avx512 {
void sgemm(const GemmArgs& g);
GemmBPart sgemm_b_part(const GemmArgs& g, int t);
void round_to_bf16(float* dst, const float* src, long n);
}  // namespace avx512
namespace avx2 {
void sgemm(const GemmArgs& g);
GemmBPart sgemm_b_part(const GemmArgs& g, int t);
void round_to_bf16(float* dst, const float* src, long n);
}  // namespace avx2
namespace generic {
void sgemm(const GemmArgs& g);
GemmBPart sgemm_b_part(const GemmArgs& g, int t);
void round_to_bf16(float* dst, const float* src, long n);
}  // namespace generic

// The selected path's conversion of n floats to bf16 (what its packing does).
void round_to_bf16_on_path(float* dst, const float* src, long n);

}  // namespace fastdl
