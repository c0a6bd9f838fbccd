// Philox-4x32-10 over 16 counters at once (AVX-512F), for the dropout kernels. Only
// included by *_avx512.cpp files. Matches fastdl/philox.h bit for bit.
#pragma once
#include <immintrin.h>

#include "fastdl/philox.h"
#include "simd/philox_bits.h"
#include "simd/vec_avx512.h"

// GCC 12 flags the self-initialised _mm512_undefined_epi32() inside the unmasked
// integer intrinsics (mul_epu32, srli/slli_epi64) as uninitialised: a known false
// positive, silenced for the translation units that include this header.
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace fastdl::simd {

struct PhiloxAvx512 {
  static constexpr int lanes = 16;  // counters per call: 4 * lanes = 64 keep bits

  // hi/lo 32-bit halves of a * m per lane. mul_epu32 multiplies the even lanes only.
  static FASTDL_INLINE void mulhilo(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
    const __m512i pe = _mm512_mul_epu32(a, m);
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  }

  // Keep bits of elements 4c .. 4c + 63: bit e - 4c. Counters c .. c + 15 (64-bit c
  // split into counter words 0 and 1; the carry is handled per lane).
  static FASTDL_INLINE uint64_t keep_bits(uint64_t c, const DropoutKey& k) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i base = _mm512_set1_epi32((int)(uint32_t)c);
    __m512i c0 = _mm512_add_epi32(base, iota);
    const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, base);
    __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32((int)(uint32_t)(c >> 32)), carry,
                                       _mm512_set1_epi32((int)(uint32_t)(c >> 32)),
                                       _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32((int)k.step), c3 = _mm512_set1_epi32((int)k.stream);
    const __m512i m0 = _mm512_set1_epi32((int)Philox4x32::kMul0);
    const __m512i m1 = _mm512_set1_epi32((int)Philox4x32::kMul1);
    uint32_t k0 = k.key0, k1 = k.key1;
#pragma GCC unroll 10
    for (int r = 0; r < Philox4x32::kRounds; ++r) {
      if (r) { k0 += Philox4x32::kWeyl0; k1 += Philox4x32::kWeyl1; }
      __m512i hi0, lo0, hi1, lo1;
      mulhilo(c0, m0, &hi0, &lo0);
      mulhilo(c2, m1, &hi1, &lo1);
      // x ^ y ^ key in one ternary-logic op (0x96 = three-way xor).
      c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32((int)k0), 0x96);
      c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32((int)k1), 0x96);
      c1 = lo1;
      c3 = lo0;
    }
    const __m512i t = _mm512_set1_epi32((int)k.threshold);
    const uint32_t w0 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(c0, 8), t);
    const uint32_t w1 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(c1, 8), t);
    const uint32_t w2 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(c2, 8), t);
    const uint32_t w3 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(c3, 8), t);
    return interleave_words(w0, w1, w2, w3);
  }

  // The low 16 bits as a lane mask for VecAvx512::select.
  static FASTDL_INLINE VecAvx512::Mask lane_mask(uint32_t bits) { return (__mmask16)bits; }
};

}  // namespace fastdl::simd
