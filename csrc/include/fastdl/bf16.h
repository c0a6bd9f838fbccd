// bfloat16: the upper 16 bits of a float32 (sign, 8 exponent bits, 7 mantissa bits).
// The reference conversion every bf16 path of the GEMM follows (the x86 conversion
// instructions, VCVTNEPS2BF16, convert the same way):
//   - round to nearest, ties to even;
//   - a subnormal float32 becomes a zero of its sign (the GEMMs run with subnormals
//     flushed anyway: runtime/flush_denormals.h);
//   - a NaN stays a NaN: its upper 16 bits with the quiet bit set;
//   - a finite value past the largest bf16 (3.3895e38) rounds to infinity.
#pragma once
#include <cstdint>
#include <cstring>

namespace fastdl {

inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  // NaN
  if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);          // 0, subnormal
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// x rounded to the nearest bf16, as a float32.
inline float round_to_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

}  // namespace fastdl
