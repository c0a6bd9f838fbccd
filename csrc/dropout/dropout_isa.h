// Internal: the per-ISA dropout passes behind fastdl/dropout.h.
#pragma once
#include <cstdint>

#include "fastdl/philox.h"

namespace fastdl {

// y = keep ? x * scale : 0 over `size` elements, and the bit-packed keep mask
// (ceil(size / 8) bytes, bits past `size` zero).
struct DropoutFwdArgs {
  float* y; uint8_t* mask;
  const float* x;
  long size;
  DropoutKey key; float scale;
};
// dx = keep ? dy * scale : 0, keep read from the mask.
struct DropoutBwdArgs {
  float* dx;
  const float* dy; const uint8_t* mask;
  long size;
  float scale;
};

namespace avx512 { void dropout_forward(const DropoutFwdArgs& a); void dropout_backward(const DropoutBwdArgs& a); }
namespace avx2 { void dropout_forward(const DropoutFwdArgs& a); void dropout_backward(const DropoutBwdArgs& a); }
namespace generic { void dropout_forward(const DropoutFwdArgs& a); void dropout_backward(const DropoutBwdArgs& a); }

}  // namespace fastdl
