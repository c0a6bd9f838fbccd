// The fp32 micro-kernel: an MR x NR tile of C held in registers over a K block, FMAs
// of broadcast A elements with rows of a B panel, then the epilogue (gemm_epilogue.inl).
// Included inside namespace fastdl::<isa> by gemm_kernel.inl (see it for what the
// includer defines first).

// b: a packed panel (ldb == NR) or, for small M, B itself (ldb == its row stride).
// Not templated on the activation: only the epilogue's store is (store_tile), so each
// tile shape and A layout is compiled once per path.
// R: the rows the K loop computes (the A panel keeps its MR stride). A ragged last
// row panel runs with a smaller R instead of FMAs on zero padding: batch 32 or 128
// leaves 8 rows of 12, which the full kernel would pay for as 12. CV: the vectors of
// each row it computes, likewise for a narrow last column panel (10 classes: 1 of 2).
template <int AM, int R, int CV = NRV>
static void micro_kernel(int kc, const float* a, long lda, const float* b, long ldb, float* c,
                         long ldc, bool load_c, const GemmEpilogue* ep, long col0, long row0,
                         int rows, int cols) {
  static_assert(R >= 1 && R <= MR, "a micro-tile computes 1..MR rows");
  static_assert(CV >= 1 && CV <= NRV, "a micro-tile computes 1..NRV vectors per row");
  V acc[MR][NRV];
  // The C tile is touched only after the K loop. Fetch it into L2 now, and into L1
  // (for writing) kTail steps before the end: fetched into L1 now, the A and B
  // streams of the loop would evict it before the stores.
  constexpr int kTail = 32;
  for (int i = 0; i < rows; ++i) {
    __builtin_prefetch(c + i * ldc, 0, 2);  // prefetcht1 on x86
    __builtin_prefetch(c + i * ldc + NR - 1, 0, 2);
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NRV; ++j) acc[i][j] = V::zero();
  auto k_step = [&](int p) __attribute__((always_inline)) {
    V bv[CV];
#pragma GCC unroll 4
    for (int j = 0; j < CV; ++j) bv[j] = V::load(b + p * ldb + j * V::width);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const V ai = V::set1(AM == kAInRows      ? a[i * lda + p]
                           : AM == kAInColumns ? a[p * lda + i]
                                               : a[p * MR + i]);
#pragma GCC unroll 4
      for (int j = 0; j < CV; ++j) acc[i][j] = V::fma(ai, bv[j], acc[i][j]);
    }
  };
  int p = 0;
#pragma GCC unroll 4
  for (; p < kc - kTail; ++p) k_step(p);
  for (int i = 0; i < rows; ++i) {
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
  }
  // A tile sink's data likewise: fetched at the tile's start, it was evicted again by
  // the A and B streams before the epilogue (on a 32 KiB L1, AMD's prefetches all fill
  // L1); fetched here, near the end of the K loop, it is still there for the update.
  if (ep && ep->sink && ep->sink->prefetch) ep->sink->prefetch(ep->sink->ctx, row0, col0, rows, cols);
#pragma GCC unroll 4
  for (; p < kc; ++p) k_step(p);
  store_tile(acc, c, ldc, load_c, ep, col0, row0, rows, cols);
}

// The micro-kernel for a tile of `rows` x `cols`: the full one; for a ragged last row
// panel the smallest of MR/3, 2MR/3 (MR/2 when MR is not a multiple of 3) that covers
// it; for a last column panel of one vector or less, one vector per row.
template <int AM>
static FASTDL_INLINE void micro_tile(int kc, const float* a, long lda, const float* b, long ldb,
                                     float* c, long ldc, bool load_c, const GemmEpilogue* ep,
                                     long col0, long row0, int rows, int cols) {
  if constexpr (NRV > 1) {
    if (cols <= V::width)
      return micro_kernel<AM, MR, 1>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0,
                                          rows, cols);
  }
  if constexpr (MR % 3 == 0) {
    if (rows <= MR / 3)
      return micro_kernel<AM, MR / 3>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0,
                                           rows, cols);
    if (rows <= 2 * MR / 3)
      return micro_kernel<AM, 2 * MR / 3>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0,
                                               row0, rows, cols);
  } else if constexpr (MR % 2 == 0) {
    if (rows <= MR / 2)
      return micro_kernel<AM, MR / 2>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0,
                                           rows, cols);
  }
  micro_kernel<AM, MR>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0, rows, cols);
}

// Whether micro_tile's kernel for a rows x cols tile computes exactly `rows` rows: only
// then can it read A's rows in place (it would read past A's last row otherwise).
static constexpr bool reads_exact_rows(int rows, int cols) {
  if (rows == MR) return true;
  if (NRV > 1 && cols <= V::width) return false;  // the narrow kernel computes MR rows
  if constexpr (MR % 3 == 0) return rows == MR / 3 || rows == 2 * MR / 3;
  else if constexpr (MR % 2 == 0) return rows == MR / 2;
  return false;
}
