// Maxout (Goodfellow et al., 2013) over groups of `pieces` adjacent columns
// (docs/kernels.md, "Maxout"): unit j of z (n, m * pieces) is the max over columns
// j * pieces .. j * pieces + pieces - 1; argmax (n, m) is uint8, the first winning
// piece (ties: the lowest index). 1 <= pieces <= 255, else std::invalid_argument.
#pragma once
#include <cstdint>

#include "fastdl/dense.h"

namespace fastdl {

// y (n, m), argmax (n, m) from z (n, m * pieces).
void maxout_forward(float* y, uint8_t* argmax, const float* z, long n, long m, int pieces);

// dz (n, m * pieces) = dy (n, m) at the winning piece of each unit, 0 elsewhere.
// An argmax entry >= pieces throws std::out_of_range naming its position, before dz is
// written.
void maxout_backward(float* dz, const float* dy, const uint8_t* argmax, long n, long m,
                     int pieces);

// y, argmax (n, m) = maxout(x @ w + b) with x (n, k), w (k, m * pieces), b (m * pieces,)
// or null. The max is taken in the GEMM's epilogue: z is never stored (see
// GemmMaxout in fastdl/gemm.h). Bit-identical to maxout_forward(dense_forward(...)).
// precision bf16: x and w rounded to bf16 in the GEMM (fastdl/precision.h).
void dense_maxout_forward(float* y, uint8_t* argmax, const float* x, const float* w,
                          const float* b, long n, long k, long m, int pieces,
                          Precision precision = Precision::fp32);

// Gradients of dense_maxout_forward given dy (n, m) and its argmax: dx (n, k) or null,
// dw (k, m * pieces), db (m * pieces,) or null.
void dense_maxout_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                           const float* w, const uint8_t* argmax, long n, long k, long m,
                           int pieces, const WeightUpdate* update = nullptr,
                           Precision precision = Precision::fp32);

}  // namespace fastdl
