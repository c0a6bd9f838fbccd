// Philox-4x32-10 for the portable path: four scalar counters per call (16 keep bits).
#pragma once
#include "fastdl/philox.h"
#include "simd/vec_generic.h"

namespace fastdl::simd {

struct PhiloxGeneric {
  static constexpr int lanes = 4;

  // Keep bits of elements 4c .. 4c + 15: bit e - 4c.
  static inline uint64_t keep_bits(uint64_t c, const DropoutKey& k) {
    const uint32_t key[2] = {k.key0, k.key1};
    uint64_t bits = 0;
    for (int l = 0; l < lanes; ++l) {
      const uint64_t cl = c + l;
      const uint32_t counter[4] = {(uint32_t)cl, (uint32_t)(cl >> 32), k.step, k.stream};
      uint32_t r[4];
      philox4x32(r, counter, key);
      for (int w = 0; w < 4; ++w) bits |= (uint64_t)((r[w] >> 8) >= k.threshold) << (4 * l + w);
    }
    return bits;
  }

  static inline VecGeneric::Mask lane_mask(uint32_t bits) {
    VecGeneric::Mask m;
    for (int i = 0; i < 4; ++i) m.m[i] = (bits >> i) & 1u;
    return m;
  }
};

}  // namespace fastdl::simd
