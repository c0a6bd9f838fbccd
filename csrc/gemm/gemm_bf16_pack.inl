// Packing for the bf16 GEMM paths: fp32 operands rounded to bf16 (VCVTNE2PS2BF16: round to
// nearest even, as fastdl/bf16.h) while they are laid out for the bf16 units; a dz operand
// is formed in fp32 first (gemm_dz.inl) and its db/dalpha reduced from the fp32 values.
// Included inside namespace fastdl::<path> by gemm_bf16_loops.inl, in translation units
// compiled with AVX-512 and AVX512-BF16, after V (VecAvx512), MR, NR (32) and KW.
//
// Layouts (kcp: the K block rounded up to KW, zero padded; rows and columns past the
// operand's edge are zero too):
//   A, MR-row panels:     [kcp / KW][MR][KW]  -- KW consecutive k of one row together:
//                         KW = 32 is an AMX A tile row, KW = 2 one VDPBF16PS broadcast.
//   B, NR-column panels:  [kcp / 2][NR][2]    -- the VNNI pair layout: each 32-bit word
//                         holds B(2q, j) and B(2q + 1, j); 16 columns of a pair-row are one
//                         AMX B tile row or one VDPBF16PS operand.

using bf16 = uint16_t;
static_assert(NR == 32, "bf16 panels are two 16-column halves");
static_assert(MR <= 16, "an A panel's rows go through one 16 x 16 transpose");
static_assert(KW == 2 || KW == 32, "A panels hold pairs (VDPBF16PS) or 32-k rows (AMX)");

// 32 floats (lo: elements 0-15, hi: 16-31) -> 32 bf16 in the same order.
static FASTDL_INLINE __m512i cvt_bf16(__m512 lo, __m512 hi) {
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// Two vectors of 16 floats -> 16 bf16 pairs: 32-bit lane j holds (r0[j], r1[j]).
static FASTDL_INLINE __m512i cvt_bf16_pairs(__m512 r0, __m512 r1) {
  alignas(64) static const uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                       21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                       11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(kInterleave), cvt_bf16(r0, r1));
}

// In-register transpose of 16 vectors of 16 32-bit words.
static FASTDL_INLINE void transpose_words(__m512i (&r)[16]) {
  V f[16];
  for (int i = 0; i < 16; ++i) f[i] = _mm512_castsi512_ps(r[i]);
  V::transpose(f);
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(f[i].v);
}

// n (0..16) floats from p, the rest zero.
static FASTDL_INLINE __m512 load_upto16(const float* p, int n) {
  return n >= 16 ? _mm512_loadu_ps(p) : n > 0 ? V::load_n(p, n).v : _mm512_setzero_ps();
}

// x (16 lanes, n of them valid) as dz = x * f'(s) when t is set (s at the same place).
template <class Act>
static FASTDL_INLINE __m512 dz_lanes(__m512 x, const float* s, int n, const float* alpha_vec,
                                     float alpha) {
  if (!s || n <= 0) return x;
  const V a = alpha_vec ? V(load_upto16(alpha_vec, n)) : V::set1(alpha);
  return dz_of<Act>(V(x), s, n < 16 ? n : 16, a).v;
}

// Stores the words of an A panel's 32-k chunk (r[i]: 16 words, KW / 2 of them per k-group
// of row i) at d, the chunk's first k-group. KW 32: one row per word vector. KW 2: pairs,
// so the rows are first transposed to one vector per pair. pairs: the chunk's k pairs
// that exist (the last chunk of a block may be shorter).
static FASTDL_INLINE void store_a_chunk(__m512i (&r)[16], bf16* d, int pairs,
                                        bool rows_in_vectors) {
  if constexpr (KW == 32) {
    if (!rows_in_vectors) transpose_words(r);
    for (int i = 0; i < MR; ++i) _mm512_storeu_si512(d + i * 32, r[i]);
  } else {
    if (rows_in_vectors) transpose_words(r);
    const __mmask16 rows = (__mmask16)((1u << MR) - 1u);
    for (int q = 0; q < pairs; ++q) _mm512_mask_storeu_epi32(d + (long)q * MR * 2, rows, r[q]);
  }
}

// A(i0.., p0..) -> the MR-row panels of an mc x kc block (kcp padded), rounded to bf16,
// in K chunks of `chunk` (a multiple of 32): chunk c holds the panels of k in
// [c * chunk, c * chunk + its length) side by side, after c * chunk * mc_pad elements.
// Row-major A (csa 1) is read along its rows, each front to back; with t, A is dy and the
// panel holds dz = dy * f'(s). A transposed view (rsa 1: the weight gradient's x^T) is read
// along its contiguous columns, two k at a time. Other strides: element by element.
// panel0: the first panel's number in dst (a thread packing its share of a block).
template <class Act>
static void pack_a_bf16_typed(int mc, int kc, int kcp, const float* A, long rsa, long csa,
                              bf16* dst, const DzBlock* t, int chunk, long mc_pad, int panel0) {
  const int npanels = (mc + MR - 1) / MR;
  // Where panel ip's k-group holding k = p starts.
  auto at = [&](int ip, int p) {
    const int c = p / chunk;
    const int len = kcp - c * chunk < chunk ? kcp - c * chunk : chunk;
    return dst + (long)c * chunk * mc_pad + (long)(panel0 + ip) * MR * len +
           (long)((p - c * chunk) / KW) * MR * KW;
  };
  auto pairs_from = [&](int p0) { return (kcp - p0) / 2 < 16 ? (kcp - p0) / 2 : 16; };
  for (int ip = 0; ip < npanels; ++ip) {
    const int i0 = ip * MR;
    const int rows = mc - i0 < MR ? mc - i0 : MR;
    if (csa == 1) {
      // 32 k of row i, as bf16 (dz formed first when t).
      auto row_chunk = [&](int i, int p0) {
        if (i >= rows) return _mm512_setzero_si512();
        const int np = kc - p0 < 32 ? kc - p0 : 32;  // valid k in this chunk (may be <= 0)
        const float* a = A + (long)(i0 + i) * rsa + p0;
        __m512 lo = load_upto16(a, np), hi = load_upto16(a + 16, np - 16);
        if (t) {
          const float* s = t->s ? t->s + (long)(i0 + i) * rsa + p0 : nullptr;
          const float* av = t->alpha_vec ? t->alpha_vec + p0 : nullptr;
          lo = dz_lanes<Act>(lo, s, np, av, t->alpha);
          hi = dz_lanes<Act>(hi, s ? s + 16 : nullptr, np - 16, av ? av + 16 : nullptr, t->alpha);
        }
        return cvt_bf16(lo, hi);
      };
      if constexpr (KW == 32) {
        // Each 32 k are a tile row of their own: each row is read front to back, which
        // the hardware prefetchers follow (32 k at a time, it was 128 bytes, then a jump).
        for (int i = 0; i < MR; ++i)
          for (int p0 = 0; p0 < kcp; p0 += 32) _mm512_storeu_si512(at(ip, p0) + i * 32, row_chunk(i, p0));
      } else {
        for (int p0 = 0; p0 < kcp; p0 += 32) {
          __m512i r[16];
          for (int i = 0; i < 16; ++i) r[i] = row_chunk(i, p0);
          store_a_chunk(r, at(ip, p0), pairs_from(p0), /*rows_in_vectors=*/true);
        }
      }
    } else if (rsa == 1) {
      for (int p0 = 0; p0 < kcp; p0 += 32) {
        __m512i r[16];
        for (int q = 0; q < 16; ++q) {
          const int p = p0 + 2 * q;
          const __m512 r0 = p < kc ? load_upto16(A + i0 + (long)p * csa, rows) : _mm512_setzero_ps();
          const __m512 r1 =
              p + 1 < kc ? load_upto16(A + i0 + (long)(p + 1) * csa, rows) : _mm512_setzero_ps();
          r[q] = cvt_bf16_pairs(r0, r1);
        }
        store_a_chunk(r, at(ip, p0), pairs_from(p0), /*rows_in_vectors=*/false);
      }
    } else {
      for (int p = 0; p < kcp; ++p)
        for (int i = 0; i < MR; ++i) {
          const float v = i < rows && p < kc ? A[(long)(i0 + i) * rsa + (long)p * csa] : 0.0f;
          at(ip, p - p % KW)[i * KW + p % KW] = bf16_bits(v);
        }
    }
  }
}

// pack_a_bf16_typed with t's activation (or none): one switch per block of A.
static void pack_a_bf16(int mc, int kc, int kcp, const float* A, long rsa, long csa, bf16* dst,
                        const DzBlock* t, int chunk, long mc_pad, int panel0 = 0) {
  if (!t)
    return pack_a_bf16_typed<ops::Act<Activation::linear>>(mc, kc, kcp, A, rsa, csa, dst, t,
                                                           chunk, mc_pad, panel0);
  ops::dispatch_activation(t->act, [&](auto act) {
    pack_a_bf16_typed<decltype(act)>(mc, kc, kcp, A, rsa, csa, dst, t, chunk, mc_pad, panel0);
  });
}

// Row-major B as dz (see DzBlock), one NR-column panel: packs dz = dy * f'(s) rounded to
// bf16 and reduces db (and prelu's dalpha) from the fp32 dz over the panel's kc rows in
// order, then adds them to the columns' running sums, as the fp32 path's pack_b_dz does.
template <class Act>
static void pack_b_dz_bf16(int cols, int kc, int kcp, const float* b, long rsb, bf16* d, long j0,
                           const DzBlock& t) {
  __m512 alpha[2], db[2], dal[2];
  int nv[2];
  for (int j = 0; j < 2; ++j) {
    nv[j] = cols - j * 16;
    db[j] = dal[j] = alpha[j] = _mm512_setzero_ps();
    if (nv[j] <= 0) continue;
    const float* av = t.alpha_vec ? t.alpha_vec + j0 + j * 16 : nullptr;
    alpha[j] = av ? load_upto16(av, nv[j]) : _mm512_set1_ps(t.alpha);
  }
  for (int p = 0; p < kcp; p += 2) {
    for (int j = 0; j < 2; ++j) {
      __m512 v[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int e = 0; e < 2; ++e) {
        if (nv[j] <= 0 || p + e >= kc) continue;
        const long o = (long)(p + e) * rsb + j0 + j * 16;
        const __m512 dy = load_upto16(b + o, nv[j]);
        __m512 x = dy;
        if (t.s) {
          const __m512 s = load_upto16(t.s + o, nv[j]);
          x = (V(dy) * Act::df(V(s), V(alpha[j]))).v;
          // min(0, s) as the fp32 path: a NaN pre-activation reaches dalpha.
          if (t.dalpha) dal[j] = V::fma(V(dy), V::min(V::zero(), V(s)), V(dal[j])).v;
        }
        db[j] = _mm512_add_ps(db[j], x);
        v[e] = x;
      }
      _mm512_storeu_si512(d + ((long)(p / 2) * NR + j * 16) * 2, cvt_bf16_pairs(v[0], v[1]));
    }
  }
  float tmp[16];
  for (int j = 0; j < 2; ++j) {
    if (nv[j] <= 0) break;
    const long c0 = j0 + j * 16;
    const int cnt = nv[j] < 16 ? nv[j] : 16;
    if (t.db) {
      _mm512_storeu_ps(tmp, db[j]);
      for (int q = 0; q < cnt; ++q) t.db[c0 + q] = t.first ? tmp[q] : t.db[c0 + q] + tmp[q];
    }
    if (t.dalpha) {
      _mm512_storeu_ps(tmp, dal[j]);
      for (int q = 0; q < cnt; ++q) t.dalpha[c0 + q] = t.first ? tmp[q] : t.dalpha[c0 + q] + tmp[q];
    }
  }
}

// B(p0.., j0..) -> the NR-column panels of a kc x nc block (kcp padded), rounded to bf16.
// Row-major B (csb 1) is read two rows at a time across the whole block, front to back
// (panel by panel, each row would be 128 bytes then a jump the prefetchers do not
// follow); with t, B is dy and the panels hold dz (pack_b_dz_bf16). A transposed view
// (rsb 1: dx's w^T) is read along its contiguous columns, 32 k at a time.
static void pack_b_bf16(int nc, int kc, int kcp, const float* B, long rsb, long csb, bf16* dst,
                        const DzBlock* t) {
  const int npanels = (nc + NR - 1) / NR;
  if (t) {
    for (int jp = 0; jp < npanels; ++jp) {
      const int cols = nc - jp * NR < NR ? nc - jp * NR : NR;
      // One switch on the activation per panel; only pack_b_dz_bf16 is compiled per
      // activation.
      ops::dispatch_activation(t->act, [&](auto act) {
        pack_b_dz_bf16<decltype(act)>(cols, kc, kcp, B, rsb, dst + (long)jp * NR * kcp,
                                      (long)jp * NR, *t);
      });
    }
  } else if (csb == 1) {
    for (int p = 0; p < kcp; p += 2) {
      const float* b0 = B + (long)p * rsb;
      const float* b1 = b0 + rsb;
      for (int jv = 0; jv < 2 * npanels; ++jv) {
        const int n = nc - jv * 16;  // valid columns from this vector on
        const __m512 r0 = p < kc ? load_upto16(b0 + jv * 16, n) : _mm512_setzero_ps();
        const __m512 r1 = p + 1 < kc ? load_upto16(b1 + jv * 16, n) : _mm512_setzero_ps();
        bf16* d = dst + (long)(jv / 2) * NR * kcp + ((long)(p / 2) * NR + (jv % 2) * 16) * 2;
        _mm512_storeu_si512(d, cvt_bf16_pairs(r0, r1));
      }
    }
  } else if (rsb == 1) {
    for (int jv = 0; jv < 2 * npanels; ++jv) {
      const int j0 = jv * 16;
      const int cols = nc - j0 < 16 ? nc - j0 : 16;
      bf16* d = dst + (long)(jv / 2) * NR * kcp + (jv % 2) * 32;
      for (int p0 = 0; p0 < kcp; p0 += 32) {
        const int np = kc - p0 < 32 ? kc - p0 : 32;
        __m512i r[16];
        for (int j = 0; j < 16; ++j) {
          if (j >= cols) {
            r[j] = _mm512_setzero_si512();
            continue;
          }
          const float* b = B + (long)(j0 + j) * csb + p0;
          r[j] = cvt_bf16(load_upto16(b, np), load_upto16(b + 16, np - 16));
        }
        transpose_words(r);  // r[q]: pair q of the chunk for the 16 columns
        const int pairs = (kcp - p0) / 2 < 16 ? (kcp - p0) / 2 : 16;
        for (int q = 0; q < pairs; ++q)
          _mm512_storeu_si512(d + (long)(p0 / 2 + q) * NR * 2, r[q]);
      }
    }
  } else {
    for (int jp = 0; jp < npanels; ++jp) {
      bf16* d = dst + (long)jp * NR * kcp;
      for (int p = 0; p < kcp; ++p)
        for (int j = 0; j < NR; ++j) {
          const long col = (long)jp * NR + j;
          const float v = col < nc && p < kc ? B[(long)p * rsb + col * csb] : 0.0f;
          d[((long)(p / 2) * NR + j) * 2 + p % 2] = bf16_bits(v);
        }
    }
  }
}

// dst = src rounded to bf16 by the conversion the packing uses (test hook).
void round_to_bf16(float* dst, const float* src, long n) {
  for (long i = 0; i < n; i += 16) {
    const int w = n - i < 16 ? (int)(n - i) : 16;
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(load_upto16(src + i, w));
    const __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << w) - 1u), _mm512_castsi512_ps(u));
  }
}
