// The GEMM, written once. Included inside namespace fastdl::<isa> by gemm_<isa>.cpp
// after defining: V (vector type), P (its vectorised Philox, simd/philox_<isa>.h),
// MR (rows per micro-tile), NRV (vectors per micro-tile row), the cache blocks
// MC, KC, NC, kAPanelInL1 (which operand's micro-panel the inner loop keeps in L1),
// kBPanelInL1MaxK (with kAPanelInL1: up to which K block B's micro-panel is kept
// in L1 instead) and kDirectBMaxRows (up to how many rows of C row-major B is read unpacked).
// Nothing here may be included twice into one namespace.
//
// Loop nest (BLIS): jc over NC columns -> pc over KC of the reduction -> pack B
// panel -> ic over MC rows -> pack A block -> micro-tiles (ir, jr or jr, ir), split
// over threads. The epilogue runs in the micro-kernel on the last pc block only.
// Small outputs skip packing where it would not pay: row-major B for few rows of C
// (kDirectBMaxRows), A or its transpose for few columns (kDirectAMaxPanels); and a C
// of a few tiles with two K blocks is split by K over two threads (gemm_split_k).

constexpr int NR = NRV * V::width;
// Up to how many B micro-panels of a column block a row-major A is read in place
// rather than packed (gemm_block). 2-core Zen 4, forward GEMMs: 128x1000x10 70.6 ->
// 47.1 us, 32x784x64 on 2 threads 22.7 -> 18.0 us; 4 panels beat 2 at 32x784x128 (64.7
// -> 61.2 us on 1 thread) and 8 gained nothing more.
constexpr int kDirectAMaxPanels = 4;
// How the micro-kernel reads A: packed MR-row panels, or in place from a row-major A
// (element (i, p) at a[i * lda + p]) or from a transposed view (a[p * lda + i]).
constexpr int kAPacked = 0, kAInRows = 1, kAInColumns = 2;
// Up to how many micro-tiles C may have for K to be split over two threads instead of
// C's rows or columns (use_split_k).
constexpr long kSplitKMaxTiles = 8;

// Where a dz operand (GemmDz) stands for the block being packed: s at the block's
// origin (same strides as the operand), alpha_vec and the B reductions at the block's
// first column. db/dalpha are null where this thread does not reduce.
struct DzBlock {
  const float* s;
  const float* alpha_vec;
  float alpha;
  float* db;
  float* dalpha;
  bool first;  // the first K block: db = sum, not db += sum
};

template <class Act>
static FASTDL_INLINE V dz_of(V dy, const float* s, int n, V alpha) {
  if (!s) return dy;
  const V sv = n >= V::width ? V::load(s) : V::load_n(s, n);
  return dy * Act::df(sv, alpha);
}

// A(i0.., p0..) -> MR-row micro-panels, p-major inside a panel, zero padded. With t,
// A is dy and the panel holds dz = dy * f'(s) (row-major A only).
template <class Act>
static void pack_a(int mc, int kc, const float* A, long rsa, long csa, float* dst, int panel,
                   const DzBlock* t) {
  const int i0 = panel * MR;
  const int rows = mc - i0 < MR ? mc - i0 : MR;
  float* d = dst + (long)panel * MR * kc;
  const float* a = A + i0 * rsa;
  if (csa == 1) {
    // Row-major A: a transpose into p-major order. MR <= V::width on every path, so
    // W p-steps of all MR rows go through one in-register transpose (zero rows pad it;
    // the last, partial step loads zero-filled lanes and stores only its p-steps).
    static_assert(MR <= V::width, "pack_a's transpose needs MR <= V::width");
    constexpr int W = V::width;
    const float* s = t ? t->s : nullptr;
    for (int p0 = 0; p0 < kc; p0 += W) {
      const int np = kc - p0 < W ? kc - p0 : W;
      V alpha = V::zero();
      if (t) alpha = !t->alpha_vec ? V::set1(t->alpha)
                     : np == W     ? V::load(t->alpha_vec + p0)
                                   : V::load_n(t->alpha_vec + p0, np);
      V r[W];
      for (int i = 0; i < W; ++i) {
        if (i >= rows) {
          r[i] = V::zero();
          continue;
        }
        const long o = (i0 + i) * rsa + p0;
        const V v = np == W ? V::load(a + i * rsa + p0) : V::load_n(a + i * rsa + p0, np);
        r[i] = t ? dz_of<Act>(v, s ? s + o : nullptr, np, alpha) : v;
      }
      V::transpose(r);
      for (int q = 0; q < np; ++q) r[q].store_n(d + (p0 + q) * MR, MR);
    }
    return;
  } else {  // (a transposed view, rsa 1, goes to pack_a_transposed_block instead)
    for (int p = 0; p < kc; ++p) {
      const float* ap = a + p * csa;
      for (int i = 0; i < rows; ++i) d[p * MR + i] = ap[i * rsa];
    }
  }
  for (int i = rows; i < MR; ++i)
    for (int p = 0; p < kc; ++p) d[p * MR + i] = 0.0f;
}

// A transposed view (dw = x^T @ dz: rsa 1, csa the row stride of x) -> all the MR-row
// micro-panels of an mc-row block, p-step by p-step: each p-step of the block is one run
// of mc contiguous floats, read front to back and dealt out to the panels. (Panel by
// panel, each p-step was MR floats a row stride apart; at a 4 KiB stride, a 1024-wide
// layer, all of a panel's rows fall in one L1 set and every read came from L2.)
static void pack_a_transposed_block(int mc, int kc, const float* A, long csa, float* dst) {
  const int npanels = (mc + MR - 1) / MR;
  for (int p = 0; p < kc; ++p) {
    const float* a = A + p * csa;
    for (int ip = 0; ip < npanels; ++ip) {
      const int rows = mc - ip * MR < MR ? mc - ip * MR : MR;
      V::load_n(a + ip * MR, rows).store_n(dst + (long)ip * MR * kc + p * MR, MR);
    }
  }
}

// Row-major B panel as dz (see DzBlock): packs dz = dy * f'(s) and reduces db (and
// prelu's dalpha) over the panel's kc rows, in order, then adds them to the column's
// running sums.
template <class Act>
static void pack_b_dz(int cols, int kc, const float* b, long rsb, float* d, long j0,
                      const DzBlock& t) {
  V alpha[NRV], db[NRV], dal[NRV];
  int nv[NRV];
  for (int j = 0; j < NRV; ++j) {
    nv[j] = cols - j * V::width;
    db[j] = dal[j] = alpha[j] = V::zero();
    if (nv[j] <= 0) continue;
    const float* av = t.alpha_vec ? t.alpha_vec + j0 + j * V::width : nullptr;
    alpha[j] = !av ? V::set1(t.alpha) : nv[j] >= V::width ? V::load(av) : V::load_n(av, nv[j]);
  }
  for (int p = 0; p < kc; ++p) {
#pragma GCC unroll 4
    for (int j = 0; j < NRV; ++j) {
      const long o = p * rsb + j0 + j * V::width;
      V v = V::zero();
      if (nv[j] > 0) {
        const V dy = nv[j] >= V::width ? V::load(b + o) : V::load_n(b + o, nv[j]);
        v = dy;
        if (t.s) {
          const V s = nv[j] >= V::width ? V::load(t.s + o) : V::load_n(t.s + o, nv[j]);
          v = dy * Act::df(s, alpha[j]);  // as dz_of, with s loaded once for dalpha too
          // min(0, s), not min(s, 0): x86 min returns its second operand when
          // unordered, so a NaN pre-activation reaches dalpha as in PyTorch.
          if (t.dalpha) dal[j] = V::fma(dy, V::min(V::zero(), s), dal[j]);
        }
        db[j] = db[j] + v;
      }
      v.store(d + p * NR + j * V::width);
    }
  }
  float tmp[V::width];
  for (int j = 0; j < NRV; ++j) {
    if (nv[j] <= 0) break;
    const long c0 = j0 + j * V::width;
    const int cnt = nv[j] < V::width ? nv[j] : V::width;
    if (t.db) {
      db[j].store(tmp);
      for (int q = 0; q < cnt; ++q) t.db[c0 + q] = t.first ? tmp[q] : t.db[c0 + q] + tmp[q];
    }
    if (t.dalpha) {
      dal[j].store(tmp);
      for (int q = 0; q < cnt; ++q) t.dalpha[c0 + q] = t.first ? tmp[q] : t.dalpha[c0 + q] + tmp[q];
    }
  }
}

// Row-major B block (kc x nc) -> all its full NR-column micro-panels, reading each row
// of the block once, front to back (packing panel by panel reads 128 bytes, then jumps
// a row stride, which the hardware prefetchers do not follow); the writes are npanels
// sequential streams. Returns how many panels it packed.
static int pack_b_full_panels_by_rows(int nc, int kc, const float* B, long rsb, float* dst) {
  const int full = nc / NR;
  for (int p = 0; p < kc; ++p) {
    const float* bp = B + p * rsb;
    for (int jp = 0; jp < full; ++jp) {
      float* d = dst + (long)jp * NR * kc + p * NR;
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) V::load(bp + jp * NR + j * V::width).store(d + j * V::width);
    }
  }
  return full;
}

// B(p0.., j0..) -> NR-column micro-panels, p-major inside a panel, zero padded. With
// t, B is dy and the panel holds dz (pack_b_dz; row-major B only).
template <class Act>
static void pack_b(int nc, int kc, const float* B, long rsb, long csb, float* dst, int panel,
                   const DzBlock* t) {
  const int j0 = panel * NR;
  const int cols = nc - j0 < NR ? nc - j0 : NR;
  float* d = dst + (long)panel * NR * kc;
  const float* b = B + j0 * csb;
  if (t) {
    pack_b_dz<Act>(cols, kc, B, rsb, d, j0, *t);
  } else if (csb == 1 && cols == NR) {
    for (int p = 0; p < kc; ++p) {
      const float* bp = b + p * rsb;
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) V::load(bp + j * V::width).store(d + p * NR + j * V::width);
    }
  } else if (csb == 1) {
    for (int p = 0; p < kc; ++p)
      for (int j = 0; j < NR; ++j) d[p * NR + j] = j < cols ? b[p * rsb + j] : 0.0f;
  } else if (rsb == 1) {
    // B is a transposed view (dx = dz @ w^T): each column is contiguous in memory.
    // Move W x W blocks through an in-register transpose instead of scalar gathers.
    constexpr int W = V::width;
    const int pfull = kc - kc % W, jfull = cols - cols % W;
    for (int j0 = 0; j0 < jfull; j0 += W)
      for (int p0 = 0; p0 < pfull; p0 += W) {
        V r[W];
        for (int t = 0; t < W; ++t) r[t] = V::load(b + (j0 + t) * csb + p0);
        V::transpose(r);
        for (int t = 0; t < W; ++t) r[t].store(d + (p0 + t) * NR + j0);
      }
    for (int j = 0; j < cols; ++j) {
      const float* bj = b + j * csb;
      for (int p = j < jfull ? pfull : 0; p < kc; ++p) d[p * NR + j] = bj[p];
    }
    for (int j = cols; j < NR; ++j)
      for (int p = 0; p < kc; ++p) d[p * NR + j] = 0.0f;
  } else {
    for (int j = 0; j < cols; ++j) {
      const float* bj = b + j * csb;
      for (int p = 0; p < kc; ++p) d[p * NR + j] = bj[p * rsb];
    }
    for (int j = cols; j < NR; ++j)
      for (int p = 0; p < kc; ++p) d[p * NR + j] = 0.0f;
  }
}

// ORs/stores `count` keep bits (bit t <-> flat element s + t) into the bit-packed mask.
// Bytes wholly inside [s, s + count) belong to this tile row alone and are stored;
// a byte shared with another tile row (odd row lengths) is OR-ed atomically.
static FASTDL_INLINE void write_mask_bits(uint8_t* mask, uint64_t s, uint64_t bits, int count) {
  static_assert(NR + 7 <= 64, "a tile row's keep bits plus a byte offset must fit 64 bits");
  const uint64_t e = s + count;
  const int off = (int)(s & 7);
  const uint64_t w = (bits & ((1ull << count) - 1)) << off;
  const uint64_t b0 = s >> 3, b1 = (e - 1) >> 3;
  for (uint64_t b = b0; b <= b1; ++b) {
    const uint8_t v = (uint8_t)(w >> (8 * (b - b0)));
    const bool shared = (b == b0 && off != 0) || (b == b1 && (e & 7) != 0);
    if (shared)
      __atomic_fetch_or(mask + b, v, __ATOMIC_RELAXED);
    else
      mask[b] = v;
  }
}

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
// compiles to branches that random data mispredicts half the time: it was 20% of
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

// The sink epilogue: z = acc (+ old C) goes to a stack tile (and to C when store_c),
// then to the sink. Out of line: a tile's worth of FMAs dwarfs the call, and the
// micro-kernel's accumulators stay in registers.
__attribute__((noinline)) static void store_tile_sink(V (&acc)[MR][NRV], float* c, long ldc,
                                                      bool load_c, const GemmTileSink& sink,
                                                      long col0, long row0, int rows, int cols) {
  alignas(64) float tile[MR * NR];
  for (int i = 0; i < rows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NRV; ++j) {
      const int nj = cols - j * V::width;
      if (nj <= 0) break;
      const bool full = nj >= V::width;
      float* ci = c + i * ldc + j * V::width;
      V v = acc[i][j];
      if (load_c) v = v + (full ? V::load(ci) : V::load_n(ci, nj));
      v.store(tile + i * NR + j * V::width);
      if (sink.store_c) full ? v.store(ci) : v.store_n(ci, nj);
    }
  sink.fn(sink.ctx, tile, NR, row0, col0, rows, cols);
}

// Writes the accumulators to C: adds the old C when load_c, and on the last K block
// applies the epilogue. rows/cols trim edge tiles.
template <class Act>
static FASTDL_INLINE void store_tile(V (&acc)[MR][NRV], float* c, long ldc, bool load_c,
                                     const GemmEpilogue* ep, long col0, long row0, int rows,
                                     int cols) {
  if (ep && (ep->maxout || ep->sink)) {
    // Those two take the tile by reference in calls of their own: handing them a copy
    // keeps acc's address from escaping, so that the accumulators of every micro-kernel
    // live in registers, not in a stack array stored and reloaded around each tile.
    V tile[MR][NRV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NRV; ++j) tile[i][j] = acc[i][j];
    if (ep->maxout) store_tile_maxout(tile, c, ldc, load_c, ep, col0, row0, rows, cols);
    else store_tile_sink(tile, c, ldc, load_c, *ep->sink, col0, row0, rows, cols);
    return;
  }
  // Dropout: the keep bits of each tile row (bit t <-> column col0 + t), from one
  // vectorised Philox call over the counters that cover the row's flat indices.
  const GemmDropout* drop = ep ? ep->dropout : nullptr;
  uint64_t keep[MR];
  V scale = V::zero();
  if (drop) {
    static_assert(NR + 3 <= 4 * P::lanes, "one Philox call must cover a tile row");
    scale = V::set1(drop->scale);
    for (int i = 0; i < rows; ++i) {
      const uint64_t f0 = drop->offset + (uint64_t)(row0 + i) * drop->row_len + col0;
      keep[i] = P::keep_bits(f0 >> 2, drop->key) >> (f0 & 3);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NRV; ++j) {
    const int nj = cols - j * V::width;  // valid lanes in this vector
    if (nj <= 0) break;
    const bool full = nj >= V::width;
    V bias = V::zero(), alpha = V::zero();
    if (ep) {
      const long cj = col0 + j * V::width;
      if (ep->bias) bias = full ? V::load(ep->bias + cj) : V::load_n(ep->bias + cj, nj);
      if (ep->alpha_vec)
        alpha = full ? V::load(ep->alpha_vec + cj) : V::load_n(ep->alpha_vec + cj, nj);
      else
        alpha = V::set1(ep->alpha);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= rows) break;
      float* ci = c + i * ldc + j * V::width;
      V v = acc[i][j];
      if (load_c) v = v + (full ? V::load(ci) : V::load_n(ci, nj));
      if (ep) {
        v = v + bias;
        if (ep->z) {
          float* zi = ep->z + (row0 + i) * ep->ldz + col0 + j * V::width;
          full ? v.store(zi) : v.store_n(zi, nj);
        }
        v = Act::f(v, alpha);
        if (drop) v = V::select(P::lane_mask((uint32_t)(keep[i] >> (j * V::width))), v * scale, V::zero());
      }
      full ? v.store(ci) : v.store_n(ci, nj);
    }
  }
  if (drop)
    for (int i = 0; i < rows; ++i)
      write_mask_bits(drop->mask, (uint64_t)(row0 + i) * drop->row_len + col0, keep[i], cols);
}

// b: a packed panel (ldb == NR) or, for small M, B itself (ldb == its row stride).
// R: the rows the K loop computes (the A panel keeps its MR stride). A ragged last
// row panel runs with a smaller R instead of FMAs on zero padding: batch 32 or 128
// leaves 8 rows of 12, which the full kernel would pay for as 12. CV: the vectors of
// each row it computes, likewise for a narrow last column panel (10 classes: 1 of 2).
template <class Act, int AM, int R, int CV = NRV>
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
  // L1); here the update of a 784x1024 layer ran at parity with a separate pass instead
  // of 15% slower.
  if (ep && ep->sink && ep->sink->prefetch) ep->sink->prefetch(ep->sink->ctx, row0, col0, rows, cols);
#pragma GCC unroll 4
  for (; p < kc; ++p) k_step(p);
  store_tile<Act>(acc, c, ldc, load_c, ep, col0, row0, rows, cols);
}

// The micro-kernel for a tile of `rows` x `cols`: the full one; for a ragged last row
// panel the smallest of MR/3, 2MR/3 (MR/2 when MR is not a multiple of 3) that covers
// it; for a last column panel of one vector or less, one vector per row.
template <class Act, int AM>
static FASTDL_INLINE void micro_tile(int kc, const float* a, long lda, const float* b, long ldb,
                                     float* c, long ldc, bool load_c, const GemmEpilogue* ep,
                                     long col0, long row0, int rows, int cols) {
  if constexpr (NRV > 1) {
    if (cols <= V::width)
      return micro_kernel<Act, AM, MR, 1>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0,
                                          rows, cols);
  }
  if constexpr (MR % 3 == 0) {
    if (rows <= MR / 3)
      return micro_kernel<Act, AM, MR / 3>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0,
                                           rows, cols);
    if (rows <= 2 * MR / 3)
      return micro_kernel<Act, AM, 2 * MR / 3>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0,
                                               row0, rows, cols);
  } else if constexpr (MR % 2 == 0) {
    if (rows <= MR / 2)
      return micro_kernel<Act, AM, MR / 2>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0,
                                           rows, cols);
  }
  micro_kernel<Act, AM, MR>(kc, a, lda, b, ldb, c, ldc, load_c, ep, col0, row0, rows, cols);
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

// Per-thread packing buffers (runtime/scratch.h), grown on demand and kept: a GEMM in
// a training loop allocates nothing after the first call.
struct PackBuffers {
  ScratchBuffer a, b;
};

// The size of the equal blocks that cut `total` (>= 1) into the fewest of at most `limit`,
// rounded up to a multiple of `multiple`.
static long equal_block(long total, long limit, long multiple) {
  const long blocks = (total + limit - 1) / limit;
  return ((total + blocks - 1) / blocks + multiple - 1) / multiple * multiple;
}

// Columns per jc block: at most NC, in equal blocks that are multiples of NR. Where the
// B block stays in L2 while the A micro-panels stream past it (kAPanelInL1) and one A
// block covers all the rows (a batch-sized M: the forward and input-gradient GEMMs of a
// training step), the B block is also kept small enough to share this core's L2 with
// that A block. On a 1 MiB L2 (Zen 4) a 512 x 512 B block filled all of it, and in a
// training step, whose optimizer state passes through the caches between the GEMMs,
// they waited on L3: 784-1024-1024-10 step 7110 -> 6979 us (NC 256 per thread instead
// of 512). Not for taller A: there each B block serves several A blocks, and narrower
// ones cost 2-3% (2048^3 210 -> 204 GFLOP/s). Short K blocks (the weight gradients,
// K = batch) fit at full width. The result does not depend on the blocking.
static long nc_step_for(long cols, long kc, long rows) {
  long limit = NC;
  if constexpr (kAPanelInL1) {
    const long l2_floats = l2_cache_bytes() / (long)sizeof(float);
    if (l2_floats > 0 && rows <= MC) {
      long fit = (l2_floats - MC * kc) / kc / NR * NR;
      if (fit < NR) fit = NR;
      if (fit < limit) limit = fit;
    }
  }
  return equal_block(cols, limit, NR);
}

// C[row0 : row0+rows, col0 : col0+cols] on the calling thread, with its own buffers.
template <class Act>
static void gemm_block(const GemmArgs& g, long row0, long rows, long col0, long cols,
                       long kc_step, bool direct_b, int a_layout) {
  // Subnormal operands cost a microcode assist each: a network trained long on the
  // same data drives gradients there (runtime/flush_denormals.h). Per thread.
  FlushDenormals ftz;
  static thread_local PackBuffers bufs;
  const long k = g.k;
  const long nc_step = nc_step_for(cols, kc_step, rows);
  const long mc_max = rows < MC ? ((rows + MR - 1) / MR) * MR : MC;
  float* bpack = bufs.b.get<float>((size_t)kc_step * nc_step);
  float* apack = bufs.a.get<float>((size_t)kc_step * mc_max);
  for (long jc = col0; jc < col0 + cols; jc += nc_step) {
    const int nc = (int)(col0 + cols - jc < nc_step ? col0 + cols - jc : nc_step);
    const int npanels_b = (nc + NR - 1) / NR;
    // A met by few B panels: packing an A panel would cost about as much as the
    // products that reuse it, so the micro-kernel reads A in place (a_layout) -- except
    // a panel whose row count no micro-kernel matches exactly (it would read past A's
    // last row), which is packed with its zero padding.
    const int cc_last = nc - (npanels_b - 1) * NR;
    const bool direct_a = a_layout != kAPacked && npanels_b <= kDirectAMaxPanels;
    auto a_in_place = [&](int ip, int mc) {
      const int rr = mc - ip * MR < MR ? mc - ip * MR : MR;
      return direct_a && reads_exact_rows(rr, NR) && reads_exact_rows(rr, cc_last);
    };
    for (long pc = 0; pc < (k > 0 ? k : 1); pc += kc_step) {
      const int kc = (int)(k - pc < kc_step ? k - pc : kc_step);
      const bool first = pc == 0, last = pc + kc_step >= k;
      const bool load_c = g.accumulate || !first;
      const GemmEpilogue* ep = last ? g.ep : nullptr;
      DzBlock tb{}, ta{};
      if (g.dz_b) {
        const GemmDz& z = *g.dz_b;
        const long o = pc * g.rsb + jc;
        // With rows split over threads each packs all of B: one of them reduces.
        const bool reduce = row0 == 0;
        tb = {z.s ? z.s + o : nullptr, z.alpha_vec ? z.alpha_vec + jc : nullptr, z.alpha,
              reduce && z.db ? z.db + jc : nullptr, reduce && z.dalpha ? z.dalpha + jc : nullptr,
              first};
      }
      {
        ExactDenormals exact(g.dz_b != nullptr);
        const float* b_block = g.B + pc * g.rsb + jc * g.csb;
        // Full panels of a plain row-major B are packed row by row; direct: only a ragged
        // last panel is packed.
        const int jp0 = !direct_b && !g.dz_b && g.csb == 1
                            ? pack_b_full_panels_by_rows(nc, kc, b_block, g.rsb, bpack)
                            : 0;
        for (int jp = jp0; jp < npanels_b; ++jp)
          if (!direct_b || (jp + 1) * NR > nc)
            pack_b<Act>(nc, kc, b_block, g.rsb, g.csb, bpack, jp, g.dz_b ? &tb : nullptr);
      }
      for (long ic = row0; ic < row0 + rows; ic += MC) {
        const int mc = (int)(row0 + rows - ic < MC ? row0 + rows - ic : MC);
        const int npanels_a = (mc + MR - 1) / MR;
        if (g.dz_a) {
          const GemmDz& z = *g.dz_a;
          ta = {z.s ? z.s + ic * g.rsa + pc : nullptr, z.alpha_vec ? z.alpha_vec + pc : nullptr,
                z.alpha, nullptr, nullptr, first};
        }
        {
          ExactDenormals exact(g.dz_a != nullptr);
          if (g.rsa == 1 && g.csa != 1 && !g.dz_a) {
            // Packed a whole block at a time: only when some panel cannot be read in place.
            bool all_in_place = true;
            for (int ip = 0; ip < npanels_a; ++ip)
              all_in_place = all_in_place && a_in_place(ip, mc);
            if (!all_in_place) pack_a_transposed_block(mc, kc, g.A + ic + pc * g.csa, g.csa, apack);
          } else
            for (int ip = 0; ip < npanels_a; ++ip)
              if (!a_in_place(ip, mc))
                pack_a<Act>(mc, kc, g.A + ic * g.rsa + pc * g.csa, g.rsa, g.csa, apack, ip,
                            g.dz_a ? &ta : nullptr);
        }
        auto tile = [&](int ip, int jp) {
          const long row = ic + (long)ip * MR, col = jc + (long)jp * NR;
          const int rr = (int)(row0 + rows - row < MR ? row0 + rows - row : MR);
          const int cc = (int)(col0 + cols - col < NR ? col0 + cols - col : NR);
          const bool direct = direct_b && cc == NR;
          const float* b = direct ? g.B + pc * g.rsb + col : bpack + (long)jp * NR * kc;
          float* c = g.C + row * g.ldc + col;
          const long ldb = direct ? g.rsb : NR;
          if (!a_in_place(ip, mc))
            micro_tile<Act, kAPacked>(kc, apack + (long)ip * MR * kc, MR, b, ldb, c, g.ldc, load_c,
                                      ep, col, row, rr, cc);
          else if (a_layout == kAInRows)
            micro_tile<Act, kAInRows>(kc, g.A + row * g.rsa + pc, g.rsa, b, ldb, c, g.ldc, load_c,
                                      ep, col, row, rr, cc);
          else  // no activation in this epilogue (sgemm_typed): one instantiation serves
            micro_tile<ops::Act<Activation::linear>, kAInColumns>(
                kc, g.A + row + pc * g.csa, g.csa, b, ldb, c, g.ldc, load_c, ep, col, row, rr, cc);
        };
        if (kAPanelInL1 && kc > kBPanelInL1MaxK) {
          // The A micro-panel stays in L1 while the B panels stream from L2, and the
          // C tiles walk along a row: each C row is a sequential stream the hardware
          // prefetcher follows (down a column, every tile was a fresh page).
          for (int ip = 0; ip < npanels_a; ++ip)
            for (int jp = 0; jp < npanels_b; ++jp) tile(ip, jp);
        } else {
          // The B micro-panel stays in L1 while the A panels stream from L2.
          for (int jp = 0; jp < npanels_b; ++jp)
            for (int ip = 0; ip < npanels_a; ++ip) tile(ip, jp);
        }
      }
    }
  }
}

// Split K: C = A[:, :kc] @ B[:kc] on one thread and S = A[:, kc:] @ B[kc:] on another,
// then C = S + C with the epilogue -- for a small C and exactly two K blocks, the
// forward GEMM of a wide first layer at a small batch (32 x 784 x 64). Split by columns,
// each thread read half of every row of w, rows the optimizer had just written on
// either core; split by K, each reads only its own half of w's rows (784-64x4-10 at batch
// 32: step 104 -> 100 us, 2-core Zen 4). The one-thread order is C = b0 (+ C when
// accumulating), then C = b1 + C: the same sums, added in the same order, so the
// result is bit for bit the unsplit one.
static bool use_split_k(const GemmArgs& g, long kc_step, long row_panels, long col_panels,
                        int nthreads) {
  return nthreads >= 2 && g.k > kc_step && g.k <= 2 * kc_step && !g.dz_a && !g.dz_b &&
         !(g.ep && g.ep->maxout) && col_panels < 2L * nthreads &&
         row_panels * col_panels <= kSplitKMaxTiles;
}

template <class Act>
static void gemm_split_k(const GemmArgs& g, long kc_step, bool direct_b, int a_layout) {
  const long m = g.m, n = g.n;
  static thread_local ScratchBuffer second_half;
  float* S = second_half.get<float>((size_t)(m * n));
  GemmArgs g0 = g, g1 = g;
  g0.k = kc_step;
  g0.ep = nullptr;
  g1.k = g.k - kc_step;
  g1.A = g.A + kc_step * g.csa;
  g1.B = g.B + kc_step * g.rsb;
  g1.C = S;
  g1.ldc = n;
  g1.accumulate = false;
  g1.ep = nullptr;
  bool failed = false;
#pragma omp parallel num_threads(2)
  {
    try {
      // One thread does both halves where OpenMP gives fewer than asked (nested inside
      // another parallel region, say).
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      if (t == 0) gemm_block<Act>(g0, 0, m, 0, n, kc_step, direct_b, a_layout);
      if (t == T - 1) gemm_block<Act>(g1, 0, m, 0, n, kc_step, direct_b, a_layout);
    } catch (...) {  // an exception must not leave an OpenMP region
#pragma omp atomic write
      failed = true;
    }
  }
  if (failed) throw std::bad_alloc();
  // C = S + C and the epilogue, tile by tile through the micro-kernel's own store.
  FlushDenormals ftz;
  for (long r = 0; r < m; r += MR)
    for (long c = 0; c < n; c += NR) {
      const int rows = (int)(m - r < MR ? m - r : MR), cols = (int)(n - c < NR ? n - c : NR);
      V acc[MR][NRV];
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NRV; ++j) {
          const int nj = cols - j * V::width;
          const float* s = S + (r + i) * n + c + j * V::width;
          acc[i][j] = i >= rows || nj <= 0 ? V::zero()
                      : nj >= V::width     ? V::load(s)
                                           : V::load_n(s, nj);
        }
      store_tile<Act>(acc, g.C + r * g.ldc + c, g.ldc, true, g.ep, c, r, rows, cols);
    }
}

// How sgemm(g) divides its work among threads (sgemm_typed runs it, sgemm_b_part reports it).
struct GemmPlan {
  long kc_step;     // the K blocks' size
  int nthreads;     // 1: on the calling thread
  bool split_k;     // two K blocks, one per thread (gemm_split_k)
  bool split_cols;  // else the rows of C are split
  long parts;       // the column or row micro-panels split over the threads
};

static GemmPlan plan_of(const GemmArgs& g) {
  const long m = g.m, n = g.n, k = g.k;
  GemmPlan p{};
  // K is cut into equal blocks of at most KC (784 -> 2 x 392, not 512 + 272): a
  // short last block would pay a full C-tile reload for a few FMAs.
  p.kc_step = k > 0 ? equal_block(k, KC, 1) : 1;
  const double flops = 2.0 * m * n * (double)(k > 0 ? k : 1);
  const long col_panels = (n + NR - 1) / NR, row_panels = (m + MR - 1) / MR;
  int nthreads = flops < kGemmParallelMinFlops ? 1 : get_num_threads();
  if (nthreads > (col_panels > row_panels ? col_panels : row_panels))
    nthreads = (int)(col_panels > row_panels ? col_panels : row_panels);
  p.nthreads = nthreads < 1 ? 1 : nthreads;
  if (p.nthreads <= 1) return p;
  p.split_k = use_split_k(g, p.kc_step, row_panels, col_panels, p.nthreads);
  // Otherwise threads own disjoint column ranges (or row ranges), each packing its own
  // panels: no barrier anywhere, and every C element is reduced over K in the same order
  // whatever the thread count. Columns when there are plenty, else whichever split leaves the
  // busiest thread fewer tiles: 32 x 64 (2 column, 3 row panels) splits 1 + 1 by
  // columns, not 1 + 2 by rows (784-64x4-10 at batch 32: step 160 -> 150 us, 2-core
  // EPYC). On a tie, split the larger operand: each thread packs all of the other one
  // (the 784 x 64 weight gradient of that network splits by rows: step 140 -> 135 us).
  const long most_by_cols = (col_panels + p.nthreads - 1) / p.nthreads * row_panels;
  const long most_by_rows = (row_panels + p.nthreads - 1) / p.nthreads * col_panels;
  p.split_cols = col_panels >= 2L * p.nthreads || most_by_cols < most_by_rows ||
                 (most_by_cols == most_by_rows && m <= n);
  p.parts = p.split_cols ? col_panels : row_panels;
  return p;
}

template <class Act>
static void sgemm_typed(const GemmArgs& g) {
  const long m = g.m, n = g.n;
  const GemmPlan plan = plan_of(g);
  const long kc_step = plan.kc_step;
  // Small M: each element of B serves only M/MR micro-tiles, so packing it costs about
  // as much as the arithmetic. Read row-major B in place instead -- unless its row
  // stride is a multiple of 1 KiB, where the rows would alias in L1 (4 KiB sets).
  const bool direct_b = g.csb == 1 && m <= kDirectBMaxRows && (g.rsb % 256) != 0 && !g.dz_b;
  // Likewise A, where few B panels share each A panel (gemm_block decides per column
  // block), unless its stride would alias in L1 as B's; a dz operand must be packed (the
  // packing forms it).
  // A transposed view (the weight gradients' x^T) reads as well in place: each p-step of
  // a panel is MR contiguous floats, a row of x apart (784-64x4-10 at batch 32: step
  // 101.7 -> 99.7 us, its 784 x 64 weight gradient 23.1 -> 22.0 us). Only where the
  // epilogue applies no activation (the weight gradients' never does), which keeps it
  // to one micro-kernel per tile shape.
  const bool no_activation = !g.ep || g.ep->sink;
  const int a_layout = g.dz_a                                         ? kAPacked
                       : g.csa == 1 && (g.rsa % 256) != 0             ? kAInRows
                       : g.rsa == 1 && (g.csa % 256) != 0 && no_activation ? kAInColumns
                                                                      : kAPacked;
  if (plan.nthreads <= 1) {
    gemm_block<Act>(g, 0, m, 0, n, kc_step, direct_b, a_layout);
    return;
  }
  if (plan.split_k) {
    gemm_split_k<Act>(g, kc_step, direct_b, a_layout);
    return;
  }
  const bool split_cols = plan.split_cols;
  bool failed = false;
#pragma omp parallel num_threads(plan.nthreads)
  {
    const long parts = plan.parts;
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const long p0 = parts * t / T, p1 = parts * (t + 1) / T;
    if (p1 > p0) {
      try {
        if (split_cols) {
          const long c0 = p0 * NR, c1 = p1 * NR < n ? p1 * NR : n;
          gemm_block<Act>(g, 0, m, c0, c1 - c0, kc_step, direct_b, a_layout);
        } else {
          const long r0 = p0 * MR, r1 = p1 * MR < m ? p1 * MR : m;
          gemm_block<Act>(g, r0, r1 - r0, 0, n, kc_step, direct_b, a_layout);
        }
      } catch (...) {  // an exception must not leave an OpenMP region
#pragma omp atomic write
        failed = true;
      }
    }
  }
  if (failed) throw std::bad_alloc();
}

GemmBPart sgemm_b_part(const GemmArgs& g, int t) {
  GemmBPart part;
  if (g.m <= 0 || g.n <= 0 || t < 0) return part;
  const GemmPlan plan = plan_of(g);
  const long k = g.k > 0 ? g.k : 0;
  if (plan.nthreads <= 1 || plan.split_k) {
    // On the calling thread, or K in two blocks: the first on thread 0, the second on
    // the last of gemm_split_k's two.
    const int last = plan.nthreads <= 1 ? 0 : 1;
    if (t == 0) part.rows = plan.nthreads <= 1 ? k : plan.kc_step;
    else if (t == last) {
      part.row0 = plan.kc_step;
      part.rows = k - plan.kc_step;
    }
    if (part.rows > 0) part.cols = g.n;
    return part;
  }
  if (t >= plan.nthreads) return part;
  if (!plan.split_cols) {  // the rows of C are split: every thread reads all of B
    part.rows = k;
    part.cols = g.n;
    part.shared = true;
    return part;
  }
  const long p0 = plan.parts * t / plan.nthreads, p1 = plan.parts * (t + 1) / plan.nthreads;
  const long c0 = p0 * NR, c1 = p1 * NR < g.n ? p1 * NR : g.n;
  if (c1 > c0) {
    part.rows = k;
    part.col0 = c0;
    part.cols = c1 - c0;
  }
  return part;
}

void sgemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  // One activation type serves the epilogue or the dz operands (never both; gemm.cpp).
  const Activation act = g.dz_a ? g.dz_a->act
                         : g.dz_b ? g.dz_b->act
                         : g.ep   ? g.ep->act
                                  : Activation::linear;
  ops::dispatch_activation(act, [&](auto a) { sgemm_typed<decltype(a)>(g); });
  if (g.ep && g.ep->maxout) maxout_merge_parts(g);
}
