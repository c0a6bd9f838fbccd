// The bf16 GEMM's loop nest: the fp32 path's thread plan (gemm_plan.inl) over bf16 panels
// (gemm_bf16_pack.inl), a bf16 micro-kernel, and the fp32 epilogue (gemm_epilogue.inl)
// applied to each finished tile. Included inside namespace fastdl::<path> by gemm_amx.cpp
// and gemm_avx512_bf16.cpp after defining V, P, MR, NRV, NR (= NRV * V::width), KW (A's
// k-group, gemm_bf16_pack.inl), kTileRows (the rows one micro-kernel call computes: a
// multiple of MR), the blocking (MC rows of C per block, KC of K per micro-kernel call, NC
// columns and KCB of K per B block, kABlockBytes for A's blocks) and the micro-kernel:
//
//   struct TileUnit;  // held for the duration of a block (AMX: the tile configuration)
//   void bf16_tile(int kcp, const bf16* a, long a_stride, const bf16* b, float* c, long ldc,
//                  bool load_c, int rows, int cols);
//     C (a kTileRows x NR tile, row stride ldc floats) = (load_c ? C : 0) + A panels
//     (kTileRows / MR of them from a, a_stride apart) @ B panel b over kcp of K; rows and
//     cols say how much of the tile is real (the kernel may compute less, never more: c
//     may be a buffer).
//
// Loop nest, per thread: pack A (its rows x all of K, in blocks of rows only when large)
// -> jc over NC columns -> pb over KCB of K: pack a B block -> ic over MC rows -> pc over
// KC of K -> micro-tiles along a row of C. Each operand is converted once per thread (a
// bf16 unit multiplies faster than the fp32 operands can be converted twice), and the pc
// loop runs inside the C block, whose partial sums stay in L2. Everything is packed (the
// rounding happens there).
//
// The micro-kernel accumulates each K chunk onto C's partial sums (or the old C when
// accumulating) in its registers, whichever way the tile is finished, so a tile reaches
// the same sums with an epilogue or without one (a step fused into the weight gradient
// gives the bits of the plain GEMM then the step), and the K order does not depend on the
// thread partition. A tile without an epilogue inside C's edges is loaded from and stored
// to C by the micro-kernel; the others go through a buffer and the fp32 epilogue
// (store_tile), which then adds nothing more.

constexpr long kSplitKMaxTiles = 0;  // K is never split over threads here (no gemm_split_k)
constexpr long kKcMultiple = KW;     // so that only the last K block is padded
static_assert(kTileRows % MR == 0, "a micro-kernel call covers whole A panels");

#include "gemm/gemm_dz.inl"
#include "gemm/gemm_epilogue.inl"
#include "gemm/gemm_plan.inl"
#include "gemm/gemm_bf16_pack.inl"

// A finished tile the micro-kernel left in `tile` (row stride NR), through the epilogue
// into C (store_tile switches on the activation).
__attribute__((noinline)) static void finish_tile(const float* tile, float* c, long ldc,
                                                  const GemmEpilogue* ep, long col0, long row0,
                                                  int rows, int cols) {
  for (int r = 0; r < rows; r += MR) {
    V acc[MR][NRV];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NRV; ++j)
        acc[i][j] = r + i < rows ? V::load(tile + (r + i) * NR + j * V::width) : V::zero();
    store_tile(acc, c + r * ldc, ldc, /*load_c=*/false, ep, col0, row0 + r,
                    rows - r < MR ? rows - r : MR, cols);
  }
}

// C's rows x cols at c into a kTileRows x NR buffer, zero around them.
static void copy_into_tile(float* tile, const float* c, long ldc, int rows, int cols) {
  for (int i = 0; i < kTileRows; ++i)
    for (int j = 0; j < NR; ++j) tile[i * NR + j] = i < rows && j < cols ? c[i * ldc + j] : 0.0f;
}

// Rows ia .. ia + ma of A (ma a multiple of MR unless they end A) into a block of ma_pad
// rows starting at panel panel0 of dst.
static void pack_a_rows(const GemmArgs& g, long ia, long ma, long kp, bf16* dst, long ma_pad,
                        int panel0) {
  DzBlock ta{};
  if (g.dz_a) {
    const GemmDz& z = *g.dz_a;
    ta = {z.s ? z.s + ia * g.rsa : nullptr, z.alpha_vec, z.alpha, nullptr, nullptr, true, z.act};
  }
  ExactDenormals exact(g.dz_a != nullptr);
  pack_a_bf16((int)ma, (int)(g.k > 0 ? g.k : 0), (int)kp, g.A + ia * g.rsa, g.rsa, g.csa, dst,
                   g.dz_a ? &ta : nullptr, (int)KC, ma_pad, panel0);
}

// Per-thread packing buffers, grown on demand and kept (runtime/scratch.h).
struct Bf16PackBuffers {
  ScratchBuffer a, b;
};

static long round_up(long x, long to) { return (x + to - 1) / to * to; }

// The rows of A packed in one block: at most kABlockBytes of bf16 for all of K.
static long a_block_rows(long kp, long rows) {
  const long a_rows = kp > 0 ? round_up(std::max(MC, kABlockBytes / (2 * kp)), MC) : rows;
  return std::min(a_rows, round_up(rows, kTileRows));
}

// C[row0 : row0+rows, col0 : col0+cols] on the calling thread, with its own buffers.
// shared_a: all of A (rows 0..m) already packed as one block by the threads together
// (sgemm_bf16_loops), instead of each packing it whole. Compiled once per path, as the fp32
// path's gemm_block: only the packing of a dz operand and the epilogue's store switch on
// the activation.
static void gemm_block_bf16(const GemmArgs& g, long row0, long rows, long col0, long cols,
                            const bf16* shared_a = nullptr) {
  FlushDenormals ftz;  // for the epilogue's arithmetic, as the fp32 path
  [[maybe_unused]] TileUnit unit;  // AMX: the tile configuration of this thread
  static thread_local Bf16PackBuffers bufs;
  const long k = g.k > 0 ? g.k : 0;
  const long kp = round_up(k, KW);  // K as packed
  // A is packed once for all of K, in blocks of rows of at most kABlockBytes. B in blocks
  // of at most NC columns x KCB of K (kept in L2 while the A rows pass; NC wide enough that
  // B's rows are read in runs the prefetchers follow).
  const long ia_step = shared_a ? rows : a_block_rows(kp, rows);
  const long nc_step = equal_block(cols, NC, NR);
  const long kcb = kp > 0 ? std::min(round_up(kp, KC), KCB) : KC;
  const bf16* apack =
      shared_a ? shared_a
               : bufs.a.get<bf16>((size_t)(round_up(std::max(kp, 1L), KW) * round_up(ia_step, kTileRows)));
  bf16* bpack = bufs.b.get<bf16>((size_t)(kcb * round_up(nc_step, NR)));
  alignas(64) float tile[kTileRows * NR];
  // Both operands are packed in K chunks of KC, each chunk's panels side by side: the
  // panels a chunk's micro-kernel calls read are one contiguous run. (Panel by panel over
  // all of K, the chunks of a B block's panels were 2 * K * NR bytes apart, 128 KiB at
  // K = 2048, and all fell into the same sets of a 16-way L2.)
  for (long ia = row0; ia < row0 + rows; ia += ia_step) {
    const int ma = (int)(row0 + rows - ia < ia_step ? row0 + rows - ia : ia_step);
    const long ma_pad = round_up(ma, kTileRows);
    if (!shared_a) pack_a_rows(g, ia, ma, kp, const_cast<bf16*>(apack), ma_pad, 0);
    for (long jc = col0; jc < col0 + cols; jc += nc_step) {
      const int nc = (int)(col0 + cols - jc < nc_step ? col0 + cols - jc : nc_step);
      const int npanels_b = (nc + NR - 1) / NR;
      const long nc_pad = (long)npanels_b * NR;
      auto cols_at = [&](int jp) {
        const long col = jc + (long)jp * NR;
        return (int)(col0 + cols - col < NR ? col0 + cols - col : NR);
      };
      for (long pb = 0; pb < (kp > 0 ? kp : 1); pb += kcb) {
        const long kpb = kp - pb < kcb ? kp - pb : kcb;  // this B block's K, as packed
        for (long pc = pb; pc < pb + (kpb > 0 ? kpb : 1); pc += KC) {
          const int kc = (int)(k - pc < KC ? k - pc : KC), kcp = (int)(kp - pc < KC ? kp - pc : KC);
          DzBlock tb{};
          if (g.dz_b) {
            const GemmDz& z = *g.dz_b;
            // Rows split over threads (or A in several blocks): each packs all of B, one
            // reduces.
            const bool reduce = row0 == 0 && ia == row0;
            const long o = pc * g.rsb + jc;
            tb = {z.s ? z.s + o : nullptr, z.alpha_vec ? z.alpha_vec + jc : nullptr, z.alpha,
                  reduce && z.db ? z.db + jc : nullptr,
                  reduce && z.dalpha ? z.dalpha + jc : nullptr, pc == 0, z.act};
          }
          ExactDenormals exact(g.dz_b != nullptr);
          pack_b_bf16(nc, kc > 0 ? kc : 0, kcp, g.B + pc * g.rsb + jc * g.csb, g.rsb, g.csb,
                           bpack + (pc - pb) * nc_pad, g.dz_b ? &tb : nullptr);
        }
        for (long ic = ia; ic < ia + ma; ic += MC) {
          const int mc = (int)(ia + ma - ic < MC ? ia + ma - ic : MC);
          auto rows_at = [&](int it) {
            const long row = ic + it;
            return (int)(row0 + rows - row < kTileRows ? row0 + rows - row : kTileRows);
          };
          // K in chunks of KC: a chunk of the A micro-panel stays in L1 while the B panels
          // pass; C's MC x nc block stays in L2 from one chunk to the next.
          for (long pc = pb; pc < pb + (kpb > 0 ? kpb : 1); pc += KC) {
            const int kcp = (int)(kp - pc < KC ? kp - pc : KC);
            const bool last = pc + KC >= kp;
            const bool load_c = g.accumulate || pc > 0;
            const GemmEpilogue* ep = last ? g.ep : nullptr;
            for (int it = 0; it < mc; it += kTileRows) {
              const bf16* a = apack + pc * ma_pad + (ic - ia + it) * kcp;
              const int rr = rows_at(it);
              const long row = ic + it;
              for (int jp = 0; jp < npanels_b; ++jp) {
                const bf16* b = bpack + (pc - pb) * nc_pad + (long)jp * NR * kcp;
                const long col = jc + (long)jp * NR;
                const int cc = cols_at(jp);
                float* c = g.C + row * g.ldc + col;
                if (!ep && rr == kTileRows && cc == NR) {
                  bf16_tile(kcp, a, (long)MR * kcp, b, c, g.ldc, load_c, rr, cc);
                  continue;
                }
                if (ep && ep->sink && ep->sink->prefetch)
                  ep->sink->prefetch(ep->sink->ctx, row, col, rr, cc);
                if (load_c) copy_into_tile(tile, c, g.ldc, rr, cc);
                bf16_tile(kcp, a, (long)MR * kcp, b, tile, NR, load_c, rr, cc);
                finish_tile(tile, c, g.ldc, ep, col, row, rr, cc);
              }
            }
          }
        }
      }
    }
  }
}

static void sgemm_bf16_loops(const GemmArgs& g) {
  const GemmPlan plan = plan_of(g);
  if (plan.nthreads <= 1) {
    gemm_block_bf16(g, 0, g.m, 0, g.n);
    return;
  }
  // Columns split over threads: every thread reads all of A. Where A is one packed block
  // and tall enough to share out, the threads pack it together, each its rows, into one
  // buffer (converting fp32 costs about what the tile unit's products of a few B panels
  // do), then each runs its columns on it.
  const long kp = round_up(g.k > 0 ? g.k : 0, KW);
  const long m_pad = round_up(g.m, kTileRows);
  const long panels = m_pad / MR;
  if (plan.split_cols && a_block_rows(kp, g.m) >= g.m && panels >= 2L * plan.nthreads && kp > 0) {
    static thread_local ScratchBuffer shared;
    bf16* a = shared.get<bf16>((size_t)(kp * m_pad));
    bool failed = false;
#pragma omp parallel num_threads(plan.nthreads)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      try {
        const long p0 = panels * t / T, p1 = panels * (t + 1) / T;
        const long r0 = p0 * MR, r1 = std::min(p1 * MR, g.m);
        if (r1 > r0) pack_a_rows(g, r0, r1 - r0, kp, a, m_pad, (int)p0);
      } catch (...) {  // an exception must not leave an OpenMP region
#pragma omp atomic write
        failed = true;
      }
    }
    if (failed) throw std::bad_alloc();
    run_partitioned(plan, g.m, g.n, [&](long r0, long rows, long c0, long cols) {
      gemm_block_bf16(g, r0, rows, c0, cols, a);
    });
    return;
  }
  run_partitioned(plan, g.m, g.n, [&](long r0, long rows, long c0, long cols) {
    gemm_block_bf16(g, r0, rows, c0, cols);
  });
}

void sgemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  sgemm_bf16_loops(g);
  if (g.ep && g.ep->maxout) maxout_merge_parts(g);
}
