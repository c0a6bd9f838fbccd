// 8-lane float vector for AVX2 + FMA. Only included by *_avx2.cpp files.
#pragma once
#include <immintrin.h>

#include "simd/inline.h"

namespace fastdl::simd {

struct VecAvx2 {
  static constexpr int width = 8;
  using Mask = __m256;  // all-ones lanes where true
  __m256 v;

  FASTDL_INLINE VecAvx2() = default;
  FASTDL_INLINE VecAvx2(__m256 x) : v(x) {}
  FASTDL_INLINE static VecAvx2 zero() { return _mm256_setzero_ps(); }
  FASTDL_INLINE static VecAvx2 set1(float x) { return _mm256_set1_ps(x); }
  FASTDL_INLINE static VecAvx2 load(const float* p) { return _mm256_loadu_ps(p); }
  FASTDL_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
  FASTDL_INLINE static __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  FASTDL_INLINE static VecAvx2 load_n(const float* p, int n) { return _mm256_maskload_ps(p, lane_mask(n)); }
  FASTDL_INLINE void store_n(float* p, int n) const { _mm256_maskstore_ps(p, lane_mask(n), v); }

  friend FASTDL_INLINE VecAvx2 operator+(VecAvx2 a, VecAvx2 b) { return _mm256_add_ps(a.v, b.v); }
  friend FASTDL_INLINE VecAvx2 operator-(VecAvx2 a, VecAvx2 b) { return _mm256_sub_ps(a.v, b.v); }
  friend FASTDL_INLINE VecAvx2 operator*(VecAvx2 a, VecAvx2 b) { return _mm256_mul_ps(a.v, b.v); }
  friend FASTDL_INLINE VecAvx2 operator/(VecAvx2 a, VecAvx2 b) { return _mm256_div_ps(a.v, b.v); }
  FASTDL_INLINE static VecAvx2 fma(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
  FASTDL_INLINE static VecAvx2 max(VecAvx2 a, VecAvx2 b) { return _mm256_max_ps(a.v, b.v); }
  FASTDL_INLINE static VecAvx2 min(VecAvx2 a, VecAvx2 b) { return _mm256_min_ps(a.v, b.v); }
  FASTDL_INLINE static VecAvx2 abs(VecAvx2 a) {
    return _mm256_and_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  }
  FASTDL_INLINE static VecAvx2 sqrt(VecAvx2 a) { return _mm256_sqrt_ps(a.v); }
  FASTDL_INLINE static VecAvx2 round(VecAvx2 a) {
    return _mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  FASTDL_INLINE static Mask gt(VecAvx2 a, VecAvx2 b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
  FASTDL_INLINE static Mask lt(VecAvx2 a, VecAvx2 b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
  FASTDL_INLINE static Mask le(VecAvx2 a, VecAvx2 b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ); }
  FASTDL_INLINE static Mask eq(VecAvx2 a, VecAvx2 b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }
  FASTDL_INLINE static Mask isnan(VecAvx2 a) { return _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q); }
  FASTDL_INLINE static VecAvx2 select(Mask m, VecAvx2 a, VecAvx2 b) { return _mm256_blendv_ps(b.v, a.v, m); }
  FASTDL_INLINE static VecAvx2 pow2i(VecAvx2 n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  FASTDL_INLINE static VecAvx2 frexp(VecAvx2 x, VecAvx2* e) {
    __m256i xi = _mm256_castps_si256(x.v);
    __m256i ei = _mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126));
    *e = _mm256_cvtepi32_ps(ei);
    __m256i mi = _mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x807fffff)),
                                 _mm256_set1_epi32(0x3f000000));
    return _mm256_castsi256_ps(mi);
  }
  // In-register 8x8 transpose: r[i] lane j <-> r[j] lane i.
  FASTDL_INLINE static void transpose(VecAvx2 (&r)[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
    }
    for (int i = 0; i < 2; ++i) {
      u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
      r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
  }
  // Each lane rounded to bf16 as fastdl/bf16.h's bf16_bits does, kept as a float32 (the
  // low 16 bits zero).
  FASTDL_INLINE static VecAvx2 round_to_bf16(VecAvx2 a) {
    const __m256i u = _mm256_castps_si256(a.v);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q));
    const __m256i tiny = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)),
                                            _mm256_setzero_si256());
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), nan);
    r = _mm256_blendv_epi8(r, _mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)), tiny);
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
  }
  FASTDL_INLINE static float reduce_add(VecAvx2 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace fastdl::simd
