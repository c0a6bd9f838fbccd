// Internal: the per-ISA entry points behind fastdl::sgemm and friends.
#pragma once
#include "fastdl/gemm.h"

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

namespace avx512 { void sgemm(const GemmArgs& g); GemmBPart sgemm_b_part(const GemmArgs& g, int t); }
namespace avx2 { void sgemm(const GemmArgs& g); GemmBPart sgemm_b_part(const GemmArgs& g, int t); }
namespace generic { void sgemm(const GemmArgs& g); GemmBPart sgemm_b_part(const GemmArgs& g, int t); }

}  // namespace fastdl
