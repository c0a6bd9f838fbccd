// 16-lane float vector for AVX-512F. Only included by *_avx512.cpp files, which are
// the only translation units compiled with -mavx512f.
#pragma once
#include <immintrin.h>

#include "simd/inline.h"

namespace fastdl::simd {

struct VecAvx512 {
  static constexpr int width = 16;
  using Mask = __mmask16;
  __m512 v;

  FASTDL_INLINE VecAvx512() = default;
  FASTDL_INLINE VecAvx512(__m512 x) : v(x) {}
  FASTDL_INLINE static VecAvx512 zero() { return _mm512_setzero_ps(); }
  FASTDL_INLINE static VecAvx512 set1(float x) { return _mm512_set1_ps(x); }
  FASTDL_INLINE static VecAvx512 load(const float* p) { return _mm512_loadu_ps(p); }
  FASTDL_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
  // Partial load/store of the first n lanes (n < width), zero-filling on load.
  FASTDL_INLINE static VecAvx512 load_n(const float* p, int n) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
  }
  FASTDL_INLINE void store_n(float* p, int n) const {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
  }

  friend FASTDL_INLINE VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return _mm512_add_ps(a.v, b.v); }
  friend FASTDL_INLINE VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return _mm512_sub_ps(a.v, b.v); }
  friend FASTDL_INLINE VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return _mm512_mul_ps(a.v, b.v); }
  friend FASTDL_INLINE VecAvx512 operator/(VecAvx512 a, VecAvx512 b) { return _mm512_div_ps(a.v, b.v); }
  FASTDL_INLINE static VecAvx512 fma(VecAvx512 a, VecAvx512 b, VecAvx512 c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
  FASTDL_INLINE static VecAvx512 max(VecAvx512 a, VecAvx512 b) { return _mm512_max_ps(a.v, b.v); }
  FASTDL_INLINE static VecAvx512 min(VecAvx512 a, VecAvx512 b) { return _mm512_min_ps(a.v, b.v); }
  FASTDL_INLINE static VecAvx512 abs(VecAvx512 a) { return _mm512_abs_ps(a.v); }
  FASTDL_INLINE static VecAvx512 sqrt(VecAvx512 a) { return _mm512_sqrt_ps(a.v); }
  FASTDL_INLINE static VecAvx512 round(VecAvx512 a) {
    return _mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  FASTDL_INLINE static Mask gt(VecAvx512 a, VecAvx512 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  FASTDL_INLINE static Mask lt(VecAvx512 a, VecAvx512 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
  FASTDL_INLINE static Mask le(VecAvx512 a, VecAvx512 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ); }
  FASTDL_INLINE static Mask eq(VecAvx512 a, VecAvx512 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ); }
  FASTDL_INLINE static Mask isnan(VecAvx512 a) { return _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q); }
  // select(m, a, b): a where m is set, else b.
  FASTDL_INLINE static VecAvx512 select(Mask m, VecAvx512 a, VecAvx512 b) { return _mm512_mask_blend_ps(m, b.v, a.v); }
  // 2^n for n a float holding an integer in [-126, 127].
  FASTDL_INLINE static VecAvx512 pow2i(VecAvx512 n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  // Split x > 0 into mantissa m in [0.5, 1) and exponent e (as float): x = m * 2^e.
  FASTDL_INLINE static VecAvx512 frexp(VecAvx512 x, VecAvx512* e) {
    __m512i xi = _mm512_castps_si512(x.v);
    __m512i ei = _mm512_sub_epi32(_mm512_srli_epi32(xi, 23), _mm512_set1_epi32(126));
    *e = _mm512_cvtepi32_ps(ei);
    __m512i mi = _mm512_or_si512(_mm512_and_si512(xi, _mm512_set1_epi32(0x807fffff)),
                                 _mm512_set1_epi32(0x3f000000));
    return _mm512_castsi512_ps(mi);
  }
  FASTDL_INLINE static float reduce_add(VecAvx512 a) { return _mm512_reduce_add_ps(a.v); }
  // Each lane rounded to bf16 as fastdl/bf16.h's bf16_bits does, kept as a float32 (the
  // low 16 bits zero). Integer arithmetic on the bits: AVX-512F has no bf16 conversion.
  FASTDL_INLINE static VecAvx512 round_to_bf16(VecAvx512 a) {
    const __m512i u = _mm512_castps_si512(a.v);
    const __mmask16 nan = _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
    const __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
    r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
  }
  // In-register 16x16 transpose: r[i] lane j <-> r[j] lane i.
  FASTDL_INLINE static void transpose(VecAvx512 (&r)[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
    }
    for (int i = 0; i < 4; ++i) {  // u[4i + j]: column j (of each 4-lane block) of rows 4i..4i+3
      u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {  // gather the 128-bit blocks of the four row groups
      const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
      const __m512 w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
      const __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
      const __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
      r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
      r[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);
      r[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
  }
};

}  // namespace fastdl::simd
