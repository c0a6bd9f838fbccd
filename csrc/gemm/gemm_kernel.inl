// The GEMM, written once. Included inside namespace fastdl::<isa> by gemm_<isa>.cpp
// after defining: V (vector type), P (its vectorised Philox, simd/philox_<isa>.h),
// MR (rows per micro-tile), NRV (vectors per micro-tile row), the cache blocks
// MC, KC, NC, kAPanelInL1 (which operand's micro-panel the inner loop keeps in L1),
// kBPanelInL1MaxK (with kAPanelInL1: up to which K block B's micro-panel is kept
// in L1 instead) and kDirectBMaxRows (up to how many rows of C row-major B is read unpacked).
// Nothing here may be included twice into one namespace.
//
// The pieces, one concern each: gemm_dz.inl and gemm_pack.inl (packing), gemm_epilogue.inl
// (what happens to a finished tile), gemm_micro_kernel.inl (the register-blocked K loop),
// gemm_plan.inl (blocking and the thread partition); this file holds the loop nest.
//
// Loop nest (BLIS): jc over NC columns -> pc over KC of the reduction -> pack B
// panel -> ic over MC rows -> pack A block -> micro-tiles (ir, jr or jr, ir), split
// over threads. The epilogue runs in the micro-kernel on the last pc block only.
// Small outputs skip packing where it would not pay: row-major B for few rows of C
// (kDirectBMaxRows), A or its transpose for few columns (kDirectAMaxPanels); and a C
// of a few tiles with two K blocks is split by K over two threads (gemm_split_k).

constexpr int NR = NRV * V::width;
// Up to how many B micro-panels of a column block a row-major A is read in place
// rather than packed (gemm_block): an A panel that serves so few B panels costs more to
// pack than the packing saves (the forward GEMMs of narrow layers). 4 rather than 2 or
// 8: the measurements behind it are in docs/benchmarks.md ("Measurement history").
constexpr int kDirectAMaxPanels = 4;
// How the micro-kernel reads A: packed MR-row panels, or in place from a row-major A
// (element (i, p) at a[i * lda + p]) or from a transposed view (a[p * lda + i]).
constexpr int kAPacked = 0, kAInRows = 1, kAInColumns = 2;
// Up to how many micro-tiles C may have for K to be split over two threads instead of
// C's rows or columns (use_split_k).
constexpr long kSplitKMaxTiles = 8;
// K blocks of any length: the micro-kernel steps K one by one.
constexpr long kKcMultiple = 1;

#include "gemm/gemm_dz.inl"
#include "gemm/gemm_pack.inl"
#include "gemm/gemm_epilogue.inl"
#include "gemm/gemm_micro_kernel.inl"
#include "gemm/gemm_plan.inl"

// Per-thread packing buffers (runtime/scratch.h), grown on demand and kept: a GEMM in
// a training loop allocates nothing after the first call.
struct PackBuffers {
  ScratchBuffer a, b;
};

// Columns per jc block: at most NC, in equal blocks that are multiples of NR. Where the
// B block stays in L2 while the A micro-panels stream past it (kAPanelInL1) and one A
// block covers all the rows (a batch-sized M: the forward and input-gradient GEMMs of a
// training step), the B block is also kept small enough to share this core's L2 with
// that A block. On a 1 MiB L2 (Zen 4) a 512 x 512 B block filled all of it, and in a
// training step, whose optimizer state passes through the caches between the GEMMs,
// they waited on L3. Not for taller A: there each B block serves several A blocks, and
// narrower ones would pack every A block once more per extra column block. Short K
// blocks (the weight gradients, K = batch) fit at full width. The result does not
// depend on the blocking.
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
// Compiled once per path: the activation is met only where a dz operand is packed
// (pack_a, pack_b) and where a finished tile is stored (store_tile), each of which
// switches on it once per panel or tile, outside the K loops.
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
  // The portable bf16 path: every panel packed (sgemm_loops reads nothing in place), then
  // rounded.
  const bool to_bf16 = g.precision == Precision::bf16;
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
              first, z.act};
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
            pack_b(nc, kc, b_block, g.rsb, g.csb, bpack, jp, g.dz_b ? &tb : nullptr);
        if (to_bf16) round_packed_to_bf16(bpack, (long)npanels_b * NR * kc);
      }
      for (long ic = row0; ic < row0 + rows; ic += MC) {
        const int mc = (int)(row0 + rows - ic < MC ? row0 + rows - ic : MC);
        const int npanels_a = (mc + MR - 1) / MR;
        if (g.dz_a) {
          const GemmDz& z = *g.dz_a;
          ta = {z.s ? z.s + ic * g.rsa + pc : nullptr, z.alpha_vec ? z.alpha_vec + pc : nullptr,
                z.alpha, nullptr, nullptr, first, z.act};
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
                pack_a(mc, kc, g.A + ic * g.rsa + pc * g.csa, g.rsa, g.csa, apack, ip,
                       g.dz_a ? &ta : nullptr);
          if (to_bf16) round_packed_to_bf16(apack, (long)npanels_a * MR * kc);
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
            micro_tile<kAPacked>(kc, apack + (long)ip * MR * kc, MR, b, ldb, c, g.ldc, load_c, ep,
                                 col, row, rr, cc);
          else if (a_layout == kAInRows)
            micro_tile<kAInRows>(kc, g.A + row * g.rsa + pc, g.rsa, b, ldb, c, g.ldc, load_c, ep,
                                 col, row, rr, cc);
          else
            micro_tile<kAInColumns>(kc, g.A + row + pc * g.csa, g.csa, b, ldb, c, g.ldc, load_c,
                                    ep, col, row, rr, cc);
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
// either core; split by K, each reads only its own half of w's rows, so fewer cache
// lines move between the cores. The one-thread order is C = b0 (+ C when
// accumulating), then C = b1 + C: the same sums, added in the same order, so the
// result is bit for bit the unsplit one.
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
      if (t == 0) gemm_block(g0, 0, m, 0, n, kc_step, direct_b, a_layout);
      if (t == T - 1) gemm_block(g1, 0, m, 0, n, kc_step, direct_b, a_layout);
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
      store_tile(acc, g.C + r * g.ldc + c, g.ldc, true, g.ep, c, r, rows, cols);
    }
}
static void sgemm_loops(const GemmArgs& g) {
  const long m = g.m, n = g.n;
  const GemmPlan plan = plan_of(g);
  const long kc_step = plan.kc_step;
  // Small M: each element of B serves only M/MR micro-tiles, so packing it costs about
  // as much as the arithmetic. Read row-major B in place instead -- unless its row
  // stride is a multiple of 1 KiB, where the rows would alias in L1 (4 KiB sets).
  // bf16 rounds every operand as it is packed, so nothing is read in place.
  const bool to_bf16 = g.precision == Precision::bf16;
  const bool direct_b =
      !to_bf16 && g.csb == 1 && m <= kDirectBMaxRows && (g.rsb % 256) != 0 && !g.dz_b;
  // Likewise A, where few B panels share each A panel (gemm_block decides per column
  // block), unless its stride would alias in L1 as B's; a dz operand must be packed (the
  // packing forms it).
  // A transposed view (the weight gradients' x^T) reads as well in place: each p-step of
  // a panel is MR contiguous floats, a row of x apart, so the packing would only copy
  // them. Only where the epilogue applies no activation: the weight gradients', the case
  // it serves (and was measured for), never does.
  const bool no_activation = !g.ep || g.ep->sink;
  const int a_layout = g.dz_a || to_bf16                             ? kAPacked
                       : g.csa == 1 && (g.rsa % 256) != 0             ? kAInRows
                       : g.rsa == 1 && (g.csa % 256) != 0 && no_activation ? kAInColumns
                                                                      : kAPacked;
  if (plan.nthreads <= 1) {
    gemm_block(g, 0, m, 0, n, kc_step, direct_b, a_layout);
    return;
  }
  if (plan.split_k) {
    gemm_split_k(g, kc_step, direct_b, a_layout);
    return;
  }
  run_partitioned(plan, m, n, [&](long r0, long rows, long c0, long cols) {
    gemm_block(g, r0, rows, c0, cols, kc_step, direct_b, a_layout);
  });
}

void sgemm(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  sgemm_loops(g);
  if (g.ep && g.ep->maxout) maxout_merge_parts(g);
}
