// The AVX512-BF16 micro-kernel: an R x (CV * 16) tile of C in zmm accumulators, each
// VDPBF16PS adding a pair of products (two k) per lane: a broadcast bf16 pair of A (its
// panel holds pairs, KW = 2) times 16 columns of B's VNNI pairs. Included inside
// namespace fastdl::avx512_bf16 by gemm_avx512_bf16.cpp, before gemm_bf16_loops.inl.
// Not specialised per activation: the tile goes to a buffer and finish_tile applies the
// epilogue, a few loads per K block's thousands of pair products.

template <int R, int CV>
__attribute__((noinline)) static void dp_tile(int kcp, const bf16* a, const bf16* b, float* c,
                                              long ldc, bool load_c) {
  __m512 acc[R][CV];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < CV; ++j)
      acc[i][j] = load_c ? _mm512_loadu_ps(c + i * ldc + j * 16) : _mm512_setzero_ps();
  for (int q = 0; q < kcp / 2; ++q) {
    __m512bh bv[CV];
    for (int j = 0; j < CV; ++j)
      bv[j] = (__m512bh)_mm512_loadu_si512(b + ((long)q * NR + j * 16) * 2);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      uint32_t pair;
      std::memcpy(&pair, a + ((long)q * MR + i) * 2, sizeof pair);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)pair);
      for (int j = 0; j < CV; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], ai, bv[j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < CV; ++j) _mm512_storeu_ps(c + i * ldc + j * 16, acc[i][j]);
}

// gemm_bf16_loops.inl's micro-kernel: the smallest of MR/3, 2MR/3, MR rows and one or two
// column vectors that covers rows x cols (the rest of the tile is zero padding).
static FASTDL_INLINE void bf16_tile(int kcp, const bf16* a, long /*a_stride: one panel*/,
                                    const bf16* b, float* c, long ldc, bool load_c, int rows,
                                    int cols) {
  static_assert(MR % 3 == 0, "ragged row panels run a third or two thirds of MR");
  if (cols > 16) {
    if (rows <= MR / 3) return dp_tile<MR / 3, 2>(kcp, a, b, c, ldc, load_c);
    if (rows <= 2 * MR / 3) return dp_tile<2 * MR / 3, 2>(kcp, a, b, c, ldc, load_c);
    return dp_tile<MR, 2>(kcp, a, b, c, ldc, load_c);
  }
  if (rows <= MR / 3) return dp_tile<MR / 3, 1>(kcp, a, b, c, ldc, load_c);
  if (rows <= 2 * MR / 3) return dp_tile<2 * MR / 3, 1>(kcp, a, b, c, ldc, load_c);
  dp_tile<MR, 1>(kcp, a, b, c, ldc, load_c);
}

// Nothing to hold for a block.
struct TileUnit {};
