// Shared by the per-ISA vectorised Philox headers (philox_<isa>.h).
#pragma once
#include <cstdint>

#include "simd/inline.h"

namespace fastdl::simd {

// Moves bit L of m (L < 16) to bit 4L.
FASTDL_INLINE uint64_t spread_bits_by4(uint64_t m) {
  m = (m | (m << 24)) & 0x000000FF000000FFull;
  m = (m | (m << 12)) & 0x000F000F000F000Full;
  m = (m | (m << 6)) & 0x0303030303030303ull;
  m = (m | (m << 3)) & 0x1111111111111111ull;
  return m;
}

// Keep masks m0..m3 of the four Philox output words of lanes 0..L-1 (bit L of m_w is
// word w of lane L) -> keep bits in element order: bit 4L + w.
FASTDL_INLINE uint64_t interleave_words(uint32_t m0, uint32_t m1, uint32_t m2, uint32_t m3) {
  return spread_bits_by4(m0) | (spread_bits_by4(m1) << 1) | (spread_bits_by4(m2) << 2) |
         (spread_bits_by4(m3) << 3);
}

}  // namespace fastdl::simd
