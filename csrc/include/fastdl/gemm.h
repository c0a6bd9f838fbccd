// Single-precision GEMM with a fused epilogue (bias + activation while the output
// tile is still in registers). BLIS-style: packed panels, a register-blocked
// micro-kernel per ISA, cache blocking, OpenMP across micro-tiles.
#pragma once
#include <cstdint>

#include "fastdl/activation.h"
#include "fastdl/philox.h"
#include "fastdl/precision.h"

namespace fastdl {

// Dropout after the activation: C = keep ? act(z) * scale : 0, with the keep bit of
// element (i, j) taken from Philox at flat index offset + i * row_len + j (offset: see
// fastdl/dropout.h) and written to mask at bit i * row_len + j
// (bit-packed, docs/kernels.md). mask (ceil(m * n / 8) bytes) must be zeroed
// beforehand: tile rows that share a byte OR their bits into it.
struct GemmDropout {
  DropoutKey key;
  float scale = 1.0f;
  long row_len = 0;
  uint8_t* mask = nullptr;
  uint64_t offset = 0;
};

// Maxout over groups of `pieces` adjacent columns of z = acc + bias (act must be
// linear): y (m, n / pieces) and argmax get each group's max and first winning piece.
// C is then never written on the last K block: it only carries partial sums between
// K blocks (k > KC), so it may be scratch. A group that straddles two NR-column
// micro-tiles is finished by a merge pass after the GEMM: the tile holding the group's
// first column writes its part to y, each later tile writes the max over its part to
// part_val/part_idx (m rows of part_ld >= gemm_maxout_parts(n) entries, one per tile).
struct GemmMaxout {
  int pieces = 1;
  float* y = nullptr;
  uint8_t* argmax = nullptr;
  long ldy = 0;
  float* part_val = nullptr;
  uint8_t* part_idx = nullptr;
  long part_ld = 0;
};
// Enough partial slots per row for any ISA's micro-tile width (NR >= 8).
inline long gemm_maxout_parts(long n) { return (n + 7) / 8; }

// Hands each finished output tile to a consumer instead of (or besides) storing it:
// the epilogue that lets an optimizer update a weight matrix from its gradient while
// the gradient tile is in registers (dense_backward's `update`). fn gets the tile's
// z = acc (+ old C when accumulating) with row stride ldt and the tile's place in C;
// it runs on the GEMM's worker threads, one call per tile, tiles disjoint. With a sink
// the epilogue's bias, activation, dropout and maxout must be unset.
struct GemmTileSink {
  void (*fn)(const void* ctx, const float* tile, long ldt, long row0, long col0, long rows,
             long cols) = nullptr;
  // Optional: called when a tile's last K block starts, with the same place, so the
  // consumer can fetch what it will touch while the tile's FMAs run.
  void (*prefetch)(const void* ctx, long row0, long col0, long rows, long cols) = nullptr;
  const void* ctx = nullptr;
  bool store_c = true;  // also write the tile to C (false: C only carries K-block sums)
};

// Applied to each output element after the full K reduction:
//   z = acc + bias[j];   (z stored to `z` when non-null, row stride ldz)
//   C = act(z)           (alpha: leaky_relu / elu; alpha_vec[j]: prelu)
//   then the optional dropout or maxout (above).
struct GemmEpilogue {
  const float* bias = nullptr;
  Activation act = Activation::linear;
  float alpha = 0.0f;
  const float* alpha_vec = nullptr;
  float* z = nullptr;
  long ldz = 0;
  const GemmDropout* dropout = nullptr;  // optional, after the activation
  const GemmMaxout* maxout = nullptr;    // optional, replaces the store of C
  const GemmTileSink* sink = nullptr;    // optional, alone: see GemmTileSink
};

// C (m, n), row-major with row stride ldc, = A (m, k) @ B (k, n), where element
// A(i, p) is A[i*rsa + p*csa] and B(p, j) is B[p*rsb + j*csb]: any transpose or
// strided view is expressed through the strides. With accumulate, C += A @ B
// (the epilogue, if any, then sees the sum). k == 0 gives C = epilogue(0).
// Results do not depend on the thread count: each C element is reduced over K in
// the same order whatever the partition. precision bf16: A and B rounded to bf16 as they
// are packed, fp32 accumulation and epilogue (fastdl/precision.h).
void sgemm(long m, long n, long k, const float* A, long rsa, long csa, const float* B,
           long rsb, long csb, float* C, long ldc, bool accumulate = false,
           const GemmEpilogue* epilogue = nullptr, Precision precision = Precision::fp32);

}  // namespace fastdl
