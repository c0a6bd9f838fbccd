// Single-precision GEMM with a fused epilogue (bias + activation while the output
// tile is still in registers). BLIS-style: packed panels, a register-blocked
// micro-kernel per ISA, cache blocking, OpenMP across micro-tiles.
#pragma once
#include "fastdl/activation.h"

namespace fastdl {

// Applied to each output element after the full K reduction:
//   z = acc + bias[j];   (z stored to `z` when non-null, row stride ldz)
//   C = act(z)           (alpha: leaky_relu / elu; alpha_vec[j]: prelu)
struct GemmEpilogue {
  const float* bias = nullptr;
  Activation act = Activation::linear;
  float alpha = 0.0f;
  const float* alpha_vec = nullptr;
  float* z = nullptr;
  long ldz = 0;
};

// C (m, n), row-major with row stride ldc, = A (m, k) @ B (k, n), where element
// A(i, p) is A[i*rsa + p*csa] and B(p, j) is B[p*rsb + j*csb]: any transpose or
// strided view is expressed through the strides. With accumulate, C += A @ B
// (the epilogue, if any, then sees the sum). k == 0 gives C = epilogue(0).
// Results do not depend on the thread count: each C element is reduced over K in
// the same order whatever the partition.
void sgemm(long m, long n, long k, const float* A, long rsa, long csa, const float* B,
           long rsb, long csb, float* C, long ldc, bool accumulate = false,
           const GemmEpilogue* epilogue = nullptr);

}  // namespace fastdl
