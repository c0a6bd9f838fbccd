// The maxout epilogue: each tile's groups of `pieces` columns reduced to their max and
// argmax while the tile is hot (GemmMaxout in fastdl/gemm.h), and the merge of the groups
// that straddle two tiles. Included by gemm_epilogue.inl.

// Max and first argmax over z[0 .. count): branch-free (random data would mispredict
// every other compare), strict > so the first maximum wins ties; a NaN wins over any
// number (the first NaN is kept), so NaN propagates.
static FASTDL_INLINE void group_max(const float* z, int count, float* y, uint8_t* arg) {
  float best = z[0];
  int a = 0;
  for (int t = 1; t < count; ++t) {
    const bool gt = z[t] > best || (z[t] != z[t] && best == best);
    a = gt ? t : a;
    best = gt ? z[t] : best;
  }
  *y = best;
  *arg = (uint8_t)a;
}

// The whole groups of a maxout tile, vectorised and branch-free: the tile's columns are
// transposed into vectors over its rows, each group is scanned with compares and
// selects (group_max's rule: strict >, a NaN beats a number, the first NaN stays), and
// the results are transposed back to rows. Groups start at column `first` of the tile;
// there are `groups` of them, the first being group g0 of the layer. (A scalar scan
// compiles to branches that random data mispredicts half the time, a large share of
// dense_maxout_forward.)
template <int K>
static void maxout_whole_groups(const float* tile, const GemmMaxout& mo, int k, int first,
                                int groups, long g0, long row0, int rows) {
  constexpr int W = V::width;
  static_assert(MR <= W, "rows of a tile must fit one vector");
  V col[NR];  // col[c]: column c of the tile, lane i = row i
  for (int jb = 0; jb < NRV; ++jb) {
    V r[W];
    for (int i = 0; i < W; ++i) r[i] = i < rows ? V::load(tile + i * NR + jb * W) : V::zero();
    V::transpose(r);
    for (int c = 0; c < W; ++c) col[jb * W + c] = r[c];
  }
  for (int gb = 0; gb < groups; gb += W) {
    const int ng = groups - gb < W ? groups - gb : W;
    V best[W], arg[W];
    for (int q = 0; q < W; ++q) {
      best[q] = arg[q] = V::zero();
      if (q >= ng) continue;
      const int c0 = first + (gb + q) * k;
      V b = col[c0], a = V::zero();
      for (int t = 1; t < (K > 0 ? K : k); ++t) {
        const V v = col[c0 + t], tv = V::set1((float)t);
        const auto greater = V::gt(v, b);                                      // false on NaN
        const auto nan_wins = V::isnan(V::select(V::isnan(b), V::zero(), v));  // v NaN, b not
        b = V::select(greater, v, b);
        a = V::select(greater, tv, a);
        b = V::select(nan_wins, v, b);
        a = V::select(nan_wins, tv, a);
      }
      best[q] = b;
      arg[q] = a;
    }
    V::transpose(best);  // best[i]: row i's results for groups gb ..
    V::transpose(arg);
    for (int i = 0; i < rows; ++i) {
      const long o = (row0 + i) * mo.ldy + g0 + gb;
      float y[W], am[W];
      best[i].store(y);
      arg[i].store(am);
      for (int q = 0; q < ng; ++q) {
        mo.y[o + q] = y[q];
        mo.argmax[o + q] = (uint8_t)am[q];
      }
    }
  }
}

// The maxout epilogue's reduction over a tile of z held in `tile` (MR x NR). Groups
// that start in this tile are reduced over the columns the tile holds and written to
// y/argmax; the part of a group that started in an earlier tile goes to the partial
// slot of this tile, merged by maxout_merge_parts after the GEMM. Kept out of line so
// the micro-kernel's accumulators stay in registers.
// K > 0: pieces known at compile time (the common 2, 3, 4), 0: any.
template <int K>
__attribute__((noinline)) static void maxout_tile(const float* tile, const GemmMaxout& mo,
                                                  long col0, long row0, int rows, int cols) {
  const int k = K > 0 ? K : mo.pieces;
  const long g0 = (col0 + k - 1) / k;  // first group starting in this tile
  const int head = (int)(g0 * k - col0 < cols ? g0 * k - col0 : cols);
  const int full = (cols - head) / k;  // groups wholly inside this tile
  const int tail = head + full * k;    // a group that continues in the next tile
  const long tile_idx = col0 / NR;
  const uint8_t head_piece = (uint8_t)(col0 - (col0 / k) * k);
  if (head > 0)  // the tail of a group that began left of this tile
    for (int i = 0; i < rows; ++i) {
      const long row = row0 + i;
      float v;
      uint8_t a;
      group_max(tile + i * NR, head, &v, &a);
      mo.part_val[row * mo.part_ld + tile_idx] = v;
      mo.part_idx[row * mo.part_ld + tile_idx] = (uint8_t)(head_piece + a);
    }
  if (full > 0) maxout_whole_groups<K>(tile, mo, k, head, full, g0, row0, rows);
  if (tail < cols)
    for (int i = 0; i < rows; ++i) {
      const long o = (row0 + i) * mo.ldy + g0 + full;
      group_max(tile + i * NR + tail, cols - tail, mo.y + o, mo.argmax + o);
    }
}

// The maxout epilogue: z = acc (+ old C) + bias goes to a stack tile, never to C.
static FASTDL_INLINE void store_tile_maxout(V (&acc)[MR][NRV], const float* c, long ldc,
                                            bool load_c, const GemmEpilogue* ep, long col0,
                                            long row0, int rows, int cols) {
  alignas(64) float tile[MR * NR];
#pragma GCC unroll 4
  for (int j = 0; j < NRV; ++j) {
    const int nj = cols - j * V::width;
    const bool full = nj >= V::width;
    V bias = V::zero();
    if (ep->bias && nj > 0)
      bias = full ? V::load(ep->bias + col0 + j * V::width) : V::load_n(ep->bias + col0 + j * V::width, nj);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V v = acc[i][j];
      if (load_c && i < rows && nj > 0) {
        const float* ci = c + i * ldc + j * V::width;
        v = v + (full ? V::load(ci) : V::load_n(ci, nj));
      }
      (v + bias).store(tile + i * NR + j * V::width);
    }
  }
  switch (ep->maxout->pieces) {
    case 2: maxout_tile<2>(tile, *ep->maxout, col0, row0, rows, cols); break;
    case 3: maxout_tile<3>(tile, *ep->maxout, col0, row0, rows, cols); break;
    case 4: maxout_tile<4>(tile, *ep->maxout, col0, row0, rows, cols); break;
    default: maxout_tile<0>(tile, *ep->maxout, col0, row0, rows, cols); break;
  }
}

// Finishes the groups that straddle micro-tiles (see GemmMaxout): merges each later
// tile's part in column order; strict > keeps the first maximum.
static void maxout_merge_parts(const GemmArgs& g) {
  const GemmMaxout& mo = *g.ep->maxout;
  const int k = mo.pieces;
  if (NR % k == 0) return;  // groups never straddle tiles
  const long ntiles = (g.n + NR - 1) / NR;
  const int nthreads = g.m * ntiles < 20000 ? 1 : get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (long row = 0; row < g.m; ++row)
    for (long t = 1; t < ntiles; ++t) {
      const long col0 = t * NR;
      if (col0 % k == 0) continue;
      const long grp = col0 / k;
      const float v = mo.part_val[row * mo.part_ld + t];
      const float cur = mo.y[row * mo.ldy + grp];
      if (v > cur || (v != v && cur == cur)) {  // as group_max: NaN wins, first one kept
        mo.y[row * mo.ldy + grp] = v;
        mo.argmax[row * mo.ldy + grp] = mo.part_idx[row * mo.part_ld + t];
      }
    }
}
