// The bf16 GEMM's loop nest: the fp32 path's blocking and thread plan (gemm_plan.inl) over
// bf16 panels (gemm_bf16_pack.inl), a bf16 micro-kernel, and the fp32 epilogue
// (gemm_epilogue.inl) applied to each finished tile. Included inside namespace
// fastdl::<path> by gemm_amx.cpp and gemm_avx512_bf16.cpp after defining V, P, MR, NRV,
// NR (= NRV * V::width), KW (A's k-group, gemm_bf16_pack.inl), kTileRows (the rows one micro-kernel call
// computes: a multiple of MR, its panels consecutive in the packed block), the cache
// blocks MC, KC, NC, and the micro-kernel:
//
//   struct TileUnit;  // held for the duration of a block (AMX: the tile configuration)
//   void bf16_tile(int kcp, const bf16* a, const bf16* b, float* c, long ldc, int rows,
//                  int cols);
//     C (a kTileRows x NR tile, row stride ldc floats) = A panels (kTileRows / MR of them
//     from a) @ B panel b over kcp; rows and cols say how much of the tile is real (the
//     kernel may leave the rest unwritten, never write past it: c may be a buffer).
//
// Loop nest (BLIS): jc over NC columns -> pc over KC of K -> pack a B block -> ic over MC
// rows -> pack an A block -> micro-tiles. Always packed (the rounding happens there). Each
// K block's tile starts from zero, as the fp32 path's: C = block 0, then C = block p + C,
// so a tile reaches the same sums whichever way it is finished. A tile that needs no more
// than storing (the first K block without an epilogue, inside C's edges) is stored into C
// by the micro-kernel; the others go through a buffer and the fp32 epilogue (store_tile).

constexpr long kSplitKMaxTiles = 0;  // K is never split over threads here (no gemm_split_k)
constexpr long kKcMultiple = KW;     // so that only the last K block is padded
static_assert(kTileRows % MR == 0, "a micro-kernel call covers whole A panels");

#include "gemm/gemm_dz.inl"
#include "gemm/gemm_epilogue.inl"
#include "gemm/gemm_plan.inl"
#include "gemm/gemm_bf16_pack.inl"

// A tile the micro-kernel left in `tile` (row stride NR), through the epilogue into C.
template <class Act>
__attribute__((noinline)) static void finish_tile(const float* tile, float* c, long ldc,
                                                  bool load_c, const GemmEpilogue* ep, long col0,
                                                  long row0, int rows, int cols) {
  for (int r = 0; r < rows; r += MR) {
    V acc[MR][NRV];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NRV; ++j)
        acc[i][j] = r + i < rows ? V::load(tile + (r + i) * NR + j * V::width) : V::zero();
    store_tile<Act>(acc, c + r * ldc, ldc, load_c, ep, col0, row0 + r,
                    rows - r < MR ? rows - r : MR, cols);
  }
}

// Per-thread packing buffers, grown on demand and kept (runtime/scratch.h).
struct Bf16PackBuffers {
  ScratchBuffer a, b;
};

static long round_up(long x, long to) { return (x + to - 1) / to * to; }

// C[row0 : row0+rows, col0 : col0+cols] on the calling thread, with its own buffers.
template <class Act>
static void gemm_block_bf16(const GemmArgs& g, long row0, long rows, long col0, long cols,
                            long kc_step) {
  FlushDenormals ftz;  // for the epilogue's arithmetic, as the fp32 path
  [[maybe_unused]] TileUnit unit;  // AMX: the tile configuration of this thread
  static thread_local Bf16PackBuffers bufs;
  const long k = g.k;
  const long kcp_max = round_up(kc_step, KW);
  const long nc_step = equal_block(cols, NC, NR);
  const long mc_max = rows < MC ? round_up(rows, kTileRows) : MC;
  bf16* bpack = bufs.b.get<bf16>((size_t)(kcp_max * round_up(nc_step, NR)));
  bf16* apack = bufs.a.get<bf16>((size_t)(kcp_max * round_up(mc_max, kTileRows)));
  alignas(64) float tile[kTileRows * NR];
  for (long jc = col0; jc < col0 + cols; jc += nc_step) {
    const int nc = (int)(col0 + cols - jc < nc_step ? col0 + cols - jc : nc_step);
    const int npanels_b = (nc + NR - 1) / NR;
    for (long pc = 0; pc < (k > 0 ? k : 1); pc += kc_step) {
      const int kc = (int)(k - pc < kc_step ? k - pc : kc_step);
      const int kcp = (int)round_up(kc > 0 ? kc : 0, KW);
      const bool first = pc == 0, last = pc + kc_step >= k;
      const bool load_c = g.accumulate || !first;
      const GemmEpilogue* ep = last ? g.ep : nullptr;
      {
        DzBlock tb{};
        if (g.dz_b) {
          const GemmDz& z = *g.dz_b;
          const long o = pc * g.rsb + jc;
          const bool reduce = row0 == 0;  // rows split over threads: one of them reduces
          tb = {z.s ? z.s + o : nullptr, z.alpha_vec ? z.alpha_vec + jc : nullptr, z.alpha,
                reduce && z.db ? z.db + jc : nullptr,
                reduce && z.dalpha ? z.dalpha + jc : nullptr, first};
        }
        ExactDenormals exact(g.dz_b != nullptr);
        pack_b_bf16<Act>(nc, kc, kcp, g.B + pc * g.rsb + jc * g.csb, g.rsb, g.csb, bpack,
                         g.dz_b ? &tb : nullptr);
      }
      for (long ic = row0; ic < row0 + rows; ic += MC) {
        const int mc = (int)(row0 + rows - ic < MC ? row0 + rows - ic : MC);
        {
          DzBlock ta{};
          if (g.dz_a) {
            const GemmDz& z = *g.dz_a;
            ta = {z.s ? z.s + ic * g.rsa + pc : nullptr, z.alpha_vec ? z.alpha_vec + pc : nullptr,
                  z.alpha, nullptr, nullptr, first};
          }
          ExactDenormals exact(g.dz_a != nullptr);
          pack_a_bf16<Act>(mc, kc, kcp, g.A + ic * g.rsa + pc * g.csa, g.rsa, g.csa, apack,
                           g.dz_a ? &ta : nullptr);
        }
        // The A micro-panels (kTileRows x kcp) stay in L1 while the B panels of the
        // block stream past them from L2; C is walked along its rows.
        for (int it = 0; it < mc; it += kTileRows) {
          const bf16* a = apack + (long)it * kcp;
          const long row = ic + it;
          const int rr = (int)(row0 + rows - row < kTileRows ? row0 + rows - row : kTileRows);
          for (int jp = 0; jp < npanels_b; ++jp) {
            const long col = jc + (long)jp * NR;
            const int cc = (int)(col0 + cols - col < NR ? col0 + cols - col : NR);
            const bf16* b = bpack + (long)jp * NR * kcp;
            float* c = g.C + row * g.ldc + col;
            if (!ep && !load_c && rr == kTileRows && cc == NR) {
              bf16_tile(kcp, a, b, c, g.ldc, rr, cc);
              continue;
            }
            if (ep && ep->sink && ep->sink->prefetch)
              ep->sink->prefetch(ep->sink->ctx, row, col, rr, cc);
            bf16_tile(kcp, a, b, tile, NR, rr, cc);
            finish_tile<Act>(tile, c, g.ldc, load_c, ep, col, row, rr, cc);
          }
        }
      }
    }
  }
}

template <class Act>
static void sgemm_bf16_typed(const GemmArgs& g) {
  const GemmPlan plan = plan_of(g);
  if (plan.nthreads <= 1) {
    gemm_block_bf16<Act>(g, 0, g.m, 0, g.n, plan.kc_step);
    return;
  }
  run_partitioned(plan, g.m, g.n, [&](long r0, long rows, long c0, long cols) {
    gemm_block_bf16<Act>(g, r0, rows, c0, cols, plan.kc_step);
  });
}

void sgemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  // One activation type serves the epilogue or the dz operands (never both; gemm.cpp).
  const Activation act = g.dz_a ? g.dz_a->act
                         : g.dz_b ? g.dz_b->act
                         : g.ep   ? g.ep->act
                                  : Activation::linear;
  ops::dispatch_activation(act, [&](auto a) { sgemm_bf16_typed<decltype(a)>(g); });
  if (g.ep && g.ep->maxout) maxout_merge_parts(g);
}
