// Dropout with a counter-based mask (docs/kernels.md, "Dropout"): the keep decision for
// flat element i is Philox-4x32-10 of (seed, step, stream, i) (fastdl/philox.h), the
// same on every device and for any thread count. 0 <= p < 1 (else
// std::invalid_argument); p = 0 keeps everything. Kept values are multiplied by
// 1 / (1 - p) when `scale` (inverted dropout, PyTorch's form), by 1 otherwise; dropped
// ones are exactly 0 (selected, not multiplied, so -0 and NaN do not leak through).
// mask: bit-packed little-endian, bit (i & 7) of mask[i >> 3] set where kept,
// ceil(size / 8) bytes; the bits past `size` in the last byte are 0.
// offset: the keep decision of local element i is the one of flat element offset + i,
// so a tensor that is a slice of a larger one (a shard of a mini-batch split across
// processes, starting at global row r: offset = r * row length) draws the larger
// tensor's mask. The mask itself stays indexed by the local i.
#pragma once
#include <cstdint>

#include "fastdl/dense.h"

#include "fastdl/activation.h"

namespace fastdl {

// Throws std::invalid_argument unless 0 <= p < 1.
void check_dropout_p(double p);
// The factor kept values are multiplied by: float(1 / (1 - p)), or 1 without scale.
float dropout_scale(double p, bool scale);

// x, y (size,) flat; mask (ceil(size / 8),).
void dropout_forward(float* y, uint8_t* mask, const float* x, long size, double p,
                     uint64_t seed, uint32_t step, uint32_t stream = 0, bool scale = true,
                     uint64_t offset = 0);

// dx = dy * keep * dropout_scale(p, scale). dy, dx (size,).
void dropout_backward(float* dx, const float* dy, const uint8_t* mask, long size, double p,
                      bool scale = true);

// x (n, k), w (k, m), b (m,) or null; y (n, m); mask (ceil(n * m / 8),); z (n, m) or null.
// y = dropout(f(x @ w + b)) in one pass: bias, activation and the mask are applied
// while the GEMM's output tile is in registers; element (i, j) has flat index
// i * m + j, so y and mask equal dropout_forward(dense_forward(...)) exactly. z, when
// non-null, receives x @ w + b (needed by the backward where activation_needs_z).
void dense_dropout_forward(float* y, uint8_t* mask, float* z, const float* x, const float* w,
                           const float* b, long n, long k, long m, Activation act, double p,
                           uint64_t seed, uint32_t step, uint32_t stream = 0, bool scale = true,
                           float alpha = 0.0f, const float* alpha_vec = nullptr,
                           uint64_t offset = 0, Precision precision = Precision::fp32);

// Gradients of dense_dropout_forward given dy (n, m); outputs as dense_backward. s is z
// where activation_needs_z(act), else the y dense_dropout_forward returned (after
// dropout; unused for linear).
void dense_dropout_backward(float* dx, float* dw, float* db, float* dalpha, const float* dy,
                            const float* x, const float* w, const float* s, const uint8_t* mask,
                            long n, long k, long m, Activation act, double p, bool scale = true,
                            float alpha = 0.0f, const float* alpha_vec = nullptr,
                            const WeightUpdate* update = nullptr,
                            Precision precision = Precision::fp32);

}  // namespace fastdl
