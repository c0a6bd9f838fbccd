// The arithmetic of the GEMMs inside the dense kernels (docs/kernels.md, "Precision").
//   fp32: float32 operands and accumulation.
//   bf16: both operands rounded to bfloat16 as they are packed (fastdl/bf16.h), products
//         exact, accumulation and everything after it (bias, activation, dropout, maxout,
//         reductions such as db, the optimizer step) in float32. Inputs, outputs, master
//         weights and optimizer state stay float32.
#pragma once

namespace fastdl {

enum class Precision : int { fp32 = 0, bf16 = 1 };

const char* precision_name(Precision p);
// Parses "fp32" or "bf16"; throws std::invalid_argument naming the argument otherwise.
Precision parse_precision(const char* name);

}  // namespace fastdl
