// Dense layer with fused bias and activation: y = f(x @ w + b).
// All arrays float32, row-major and contiguous. Shapes: x (n, k), w (k, m) stored
// in-by-out like Keras, b (m,), y and z (n, m).
#pragma once
#include "fastdl/activation.h"
#include "fastdl/optim.h"
#include "fastdl/precision.h"

namespace fastdl {

// y = f(x @ w + b). b may be null (no bias). z, when non-null, receives the
// pre-activation x @ w + b (the backward pass needs it where activation_needs_z).
// alpha: slope of leaky_relu / elu (>= 0). alpha_vec: prelu's per-unit slopes (m,).
// precision bf16: x and w rounded to bf16 in the GEMM (fastdl/precision.h); the bias,
// activation and outputs stay fp32.
void dense_forward(float* y, float* z, const float* x, const float* w, const float* b, long n,
                   long k, long m, Activation act, float alpha = 0.0f,
                   const float* alpha_vec = nullptr, Precision precision = Precision::fp32);

// Gradients of dense_forward given dy (n, m). s is z where activation_needs_z(act),
// else y (unused for linear). Outputs: dx (n, k) or null to skip it, dw (k, m),
// db (m,) or null, dalpha (m,) for prelu (null otherwise). Outputs are overwritten.
// f'(z) is applied and db (and dalpha) reduced in one pass over dy; both GEMMs then
// read the resulting dz.
//
// With `update`, w is also updated by an optimizer step in the dw GEMM's epilogue, tile
// by tile while each gradient tile is in registers: w must be the step's flat buffer at
// `offset` (elements offset .. offset + k*m). dx is computed first, from the old w. dw
// is then written only when keep_dw, and may be null when not (a scratch buffer then
// carries the sums between K blocks). The step's other elements are the caller's.
struct WeightUpdate {
  const OptimizerStep* step = nullptr;
  long offset = 0;
  bool keep_dw = true;
};
//
// precision bf16: both GEMMs round their operands to bf16 (dz after it is formed in fp32,
// x, w); db and dalpha are reduced from the fp32 dz, and the update steps the fp32 w.
void dense_backward(float* dx, float* dw, float* db, float* dalpha, const float* dy,
                    const float* x, const float* w, const float* s, long n, long k, long m,
                    Activation act, float alpha = 0.0f, const float* alpha_vec = nullptr,
                    const WeightUpdate* update = nullptr, Precision precision = Precision::fp32);

}  // namespace fastdl
