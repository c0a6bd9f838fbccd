// Internal: the per-ISA dropout passes behind fastdl/dropout.h.
#pragma once
#include <cstdint>

#include "fastdl/philox.h"

namespace fastdl {

// y = keep ? x * scale : 0 over `size` elements, and the bit-packed keep mask
// (ceil(size / 8) bytes, bits past `size` zero); element i's keep bit is Philox's at
// offset + i.
struct DropoutFwdArgs {
  float* y; uint8_t* mask;
  const float* x;
  long size;
  DropoutKey key; float scale;
  uint64_t offset;
};
// dx = keep ? dy * scale : 0, keep read from the mask.
// dropout_keep_bits_at: the active path's vectorised generator alone (for the tests).
struct DropoutBwdArgs {
  float* dx;
  const float* dy; const uint8_t* mask;
  long size;
  float scale;
};

namespace avx512 {
void dropout_forward(const DropoutFwdArgs& a);
void dropout_backward(const DropoutBwdArgs& a);
uint64_t dropout_keep_bits_at(uint64_t c, const DropoutKey& key, int* nbits);
}  // namespace avx512
namespace avx2 {
void dropout_forward(const DropoutFwdArgs& a);
void dropout_backward(const DropoutBwdArgs& a);
uint64_t dropout_keep_bits_at(uint64_t c, const DropoutKey& key, int* nbits);
}  // namespace avx2
namespace generic {
void dropout_forward(const DropoutFwdArgs& a);
void dropout_backward(const DropoutBwdArgs& a);
uint64_t dropout_keep_bits_at(uint64_t c, const DropoutKey& key, int* nbits);
}  // namespace generic

// Dispatches dropout_keep_bits_at to the active path.
uint64_t dropout_keep_bits_at(uint64_t c, const DropoutKey& key, int* nbits);

}  // namespace fastdl
