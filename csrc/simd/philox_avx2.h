// Philox-4x32-10 over 8 counters at once (AVX2), for the dropout kernels. Only
// included by *_avx2.cpp files. Matches fastdl/philox.h bit for bit.
#pragma once
#include <immintrin.h>

#include "fastdl/philox.h"
#include "simd/philox_bits.h"
#include "simd/vec_avx2.h"

namespace fastdl::simd {

struct PhiloxAvx2 {
  static constexpr int lanes = 8;  // counters per call: 4 * lanes = 32 keep bits

  static FASTDL_INLINE void mulhilo(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
    const __m256i pe = _mm256_mul_epu32(a, m);
    const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  }

  static FASTDL_INLINE uint32_t keep_mask(__m256i w, __m256i t_minus_1) {
    // w >> 8 < 2^24 and threshold - 1 >= -1, so the signed compare is exact.
    return (uint32_t)_mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_srli_epi32(w, 8), t_minus_1)));
  }

  // Keep bits of elements 4c .. 4c + 31: bit e - 4c.
  static FASTDL_INLINE uint64_t keep_bits(uint64_t c, const DropoutKey& k) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    const __m256i base = _mm256_set1_epi32((int)(uint32_t)c);
    __m256i c0 = _mm256_add_epi32(base, iota);
    // Unsigned c0 < base via the sign-flipped signed compare: -1 where it wrapped.
    const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(c0, sign));
    __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(c >> 32)), wrapped);
    __m256i c2 = _mm256_set1_epi32((int)k.step), c3 = _mm256_set1_epi32((int)k.stream);
    const __m256i m0 = _mm256_set1_epi32((int)Philox4x32::kMul0);
    const __m256i m1 = _mm256_set1_epi32((int)Philox4x32::kMul1);
    uint32_t k0 = k.key0, k1 = k.key1;
#pragma GCC unroll 10
    for (int r = 0; r < Philox4x32::kRounds; ++r) {
      if (r) { k0 += Philox4x32::kWeyl0; k1 += Philox4x32::kWeyl1; }
      __m256i hi0, lo0, hi1, lo1;
      mulhilo(c0, m0, &hi0, &lo0);
      mulhilo(c2, m1, &hi1, &lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
      c1 = lo1;
      c3 = lo0;
    }
    const __m256i t1 = _mm256_set1_epi32((int)k.threshold - 1);
    return interleave_words(keep_mask(c0, t1), keep_mask(c1, t1), keep_mask(c2, t1),
                            keep_mask(c3, t1));
  }

  // The low 8 bits as an all-ones-lane mask for VecAvx2::select.
  static FASTDL_INLINE VecAvx2::Mask lane_mask(uint32_t bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)bits), bit);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, bit));
  }
};

}  // namespace fastdl::simd
