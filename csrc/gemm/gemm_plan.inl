// How a GEMM is cut into blocks and shared among threads: the K and column block sizes,
// the thread partition (plan_of) and the part of B each thread reads (sgemm_b_part).
// Included inside namespace fastdl::<isa> by the GEMM drivers (gemm_kernel.inl,
// gemm_bf16_loops.inl) after MR, NR, KC, kKcMultiple (K blocks are multiples of it) and kSplitKMaxTiles.

// The size of the equal blocks that cut `total` (>= 1) into the fewest of at most `limit`,
// rounded up to a multiple of `multiple`.
static long equal_block(long total, long limit, long multiple) {
  const long blocks = (total + limit - 1) / limit;
  return ((total + blocks - 1) / blocks + multiple - 1) / multiple * multiple;
}

// Whether K is split over two threads (gemm_kernel.inl's gemm_split_k, which says why).
static bool use_split_k(const GemmArgs& g, long kc_step, long row_panels, long col_panels,
                        int nthreads) {
  return nthreads >= 2 && g.k > kc_step && g.k <= 2 * kc_step && !g.dz_a && !g.dz_b &&
         !(g.ep && g.ep->maxout) && col_panels < 2L * nthreads &&
         row_panels * col_panels <= kSplitKMaxTiles;
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
  p.kc_step = k > 0 ? equal_block(k, KC, kKcMultiple) : 1;
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
  // columns, not 1 + 2 by rows (the 64-wide layers of 784-64x4-10 at batch 32). On a
  // tie, split the larger operand: each thread packs all of the other one (the 784 x 64
  // weight gradient of that network splits by rows).
  const long most_by_cols = (col_panels + p.nthreads - 1) / p.nthreads * row_panels;
  const long most_by_rows = (row_panels + p.nthreads - 1) / p.nthreads * col_panels;
  p.split_cols = col_panels >= 2L * p.nthreads || most_by_cols < most_by_rows ||
                 (most_by_cols == most_by_rows && m <= n);
  p.parts = p.split_cols ? col_panels : row_panels;
  return p;
}

// Runs block(row0, rows, col0, cols) over each thread's part of C as the plan splits it
// (not split_k), in one parallel region: threads own disjoint column (or row) ranges,
// each packing its own panels, so there is no barrier anywhere.
template <class Block>
static void run_partitioned(const GemmPlan& plan, long m, long n, const Block& block) {
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
          block(0, m, c0, c1 - c0);
        } else {
          const long r0 = p0 * MR, r1 = p1 * MR < m ? p1 * MR : m;
          block(r0, r1 - r0, 0, n);
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
