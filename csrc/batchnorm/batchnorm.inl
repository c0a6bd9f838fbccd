// Batch normalization: train forward, backward and the per-column affine map used by the
// eval forward. Included inside namespace fastdl::<isa> after defining V.
//
// Reductions run down the columns. Each thread owns a contiguous range of whole column
// blocks and walks it chunk by chunk: kRowChunk rows at a time, kColBlock columns at a
// time (a 64 x 64 tile, 16 KB, reduced in float vectors held in registers), folding each
// tile into per-column double accumulators in row order. Every column therefore sees the
// same operations in the same order whatever the thread count or range, and memory is
// read a few hundred bytes per row at a time across few pages (no per-row TLB miss, as
// a 64-column block walked down all N rows would cause). The elementwise passes (y, dx)
// then run over whole rows, the rows split across threads: with each thread writing its
// own half of every row they took longer than the reductions (below, bn_train).

namespace {

constexpr int W = V::width;
constexpr int kColBlock = 64;  // 64 floats: one 256-byte stripe per row
constexpr int kVecs = kColBlock / W;
constexpr long kRowChunk = 64;

FASTDL_INLINE V ld(const float* p, int nv) { return nv == W ? V::load(p) : V::load_n(p, nv); }
FASTDL_INLINE void st(V x, float* p, int nv) { nv == W ? x.store(p) : x.store_n(p, nv); }

int threads_for(long n, long m) { return (double)n * m < 32768.0 ? 1 : get_num_threads(); }

// Runs body(j0, j1) on contiguous ranges of whole column blocks, one range per thread.
template <class Body>
void column_ranges(long m, int threads, Body body) {
  const long nblocks = (m + kColBlock - 1) / kColBlock;
  if (threads > nblocks) threads = (int)nblocks;
  if (threads <= 1) {
    body(0L, m);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const long b0 = nblocks * t / threads, b1 = nblocks * (t + 1) / threads;
    body(b0 * kColBlock, b1 * kColBlock < m ? b1 * kColBlock : m);
  }
}

// Columns jb .. jb + cols - 1 (cols <= kColBlock, ending at or before j1): nv[v] lanes of
// vector v are live.
struct Block {
  int cols, nvecs, nv[kVecs];
  Block(long jb, long j1) {
    cols = (int)(j1 - jb < kColBlock ? j1 - jb : kColBlock);
    nvecs = (cols + W - 1) / W;
    for (int v = 0; v < kVecs; ++v) {
      const int r = cols - v * W;
      nv[v] = r <= 0 ? 0 : (r < W ? r : W);
    }
  }
};

// The tile after the current one in a thread's walk: the chunk's next block, else the
// next chunk's first block. The current tile's loop fetches it into L1 row by row: its
// rows are a row stride apart, each on its own page, which the hardware prefetchers do
// not follow, and the walk waited on every first touch. (Fetching a whole chunk ahead
// into L2 instead did not help.) Only for arrays of kFetchMinFloats or more: smaller
// ones are mostly in cache already, and there the fetches cost more than they save.
// The measurements: docs/benchmarks.md, "Measurement history".
constexpr double kFetchMinFloats = 1 << 19;  // 2 MiB

struct NextTile {
  const float* p = nullptr;  // its first row, rows m apart
  long rows = 0;             // 0: nothing to fetch
  int bytes = 0;             // per row
  NextTile(const float* x, long m, long n, long i0, long i1, long jb, long j0, long j1) {
    if ((double)n * m < kFetchMinFloats) return;
    if (jb + kColBlock < j1) {
      p = x + i0 * m + jb + kColBlock;
      rows = i1 - i0;
      bytes = Block(jb + kColBlock, j1).cols * (int)sizeof(float);
    } else if (i1 < n) {
      p = x + i1 * m + j0;
      rows = n - i1 < kRowChunk ? n - i1 : kRowChunk;
      bytes = Block(j0, j1).cols * (int)sizeof(float);
    }
  }
  // Row r of the tile (nothing past its last).
  FASTDL_INLINE void fetch(long r, long m) const {
    if (r >= rows) return;
    const char* q = reinterpret_cast<const char*>(p + r * m);
    for (int o = 0; o < bytes; o += 64) __builtin_prefetch(q + o, 0, 3);
    __builtin_prefetch(q + bytes - 1, 0, 3);  // the last line when q is not line-aligned
  }
};

// Folds the chunk rows i0 .. i1-1 of one block into mean / m2 (double, per column, the
// block's first column at index 0): the chunk's own mean and centred sum of squares (two
// passes over the tile, the second from L1, so no cancellation), merged with Chan et al.'s
// update. Its second pass fetches `next`.
void moments_tile(const Block& b, const float* x, long m, long i0, long i1, double* mean,
                  double* m2, const NextTile& next) {
  V acc[kVecs], cmean[kVecs];
  float tmp_mean[W], tmp_m2[W];
  for (int v = 0; v < kVecs; ++v) acc[v] = V::zero();
  for (long i = i0; i < i1; ++i)
    for (int v = 0; v < b.nvecs; ++v) acc[v] = acc[v] + ld(x + i * m + v * W, b.nv[v]);
  const double nb = (double)(i1 - i0), na = (double)i0;
  const V inv_rows = V::set1((float)(1.0 / nb));
  for (int v = 0; v < b.nvecs; ++v) {
    cmean[v] = acc[v] * inv_rows;
    acc[v] = V::zero();
  }
  for (long i = i0; i < i1; ++i) {
    next.fetch(i - i0, m);
    for (int v = 0; v < b.nvecs; ++v) {
      const V d = ld(x + i * m + v * W, b.nv[v]) - cmean[v];
      acc[v] = V::fma(d, d, acc[v]);
    }
  }
  for (int v = 0; v < b.nvecs; ++v) {
    cmean[v].store(tmp_mean);
    acc[v].store(tmp_m2);
    for (int t = 0; t < b.nv[v]; ++t) {
      const int c = v * W + t;
      const double delta = (double)tmp_mean[t] - mean[c];
      mean[c] += delta * nb / (na + nb);
      m2[c] += (double)tmp_m2[t] + delta * delta * na * nb / (na + nb);
    }
  }
}

// y[i, j] = (x[i, j] - center[j]) * scale[j] + shift[j] for rows i0 .. i1-1, every column.
void affine_rows(float* y, const float* x, const float* center, const float* scale,
                 const float* shift, long m, long i0, long i1) {
  const long wv = m - m % W;
  const int nt = (int)(m - wv);
  for (long i = i0; i < i1; ++i) {
    const float* xr = x + i * m;
    float* yr = y + i * m;
    for (long j = 0; j < wv; j += W)
      V::fma(V::load(xr + j) - V::load(center + j), V::load(scale + j), V::load(shift + j))
          .store(yr + j);
    if (nt)
      V::fma(V::load_n(xr + wv, nt) - V::load_n(center + wv, nt), V::load_n(scale + wv, nt),
             V::load_n(shift + wv, nt))
          .store_n(yr + wv, nt);
  }
}

// The statistics of columns [j0, j1): save_mean, save_invstd, the running statistics,
// and the column's affine map y = (x - save_mean) * scale + shift (arrays indexed by
// column).
void train_stats(const BnTrainArgs& a, long j0, long j1, float* scale, float* shift) {
  const long n = a.n, m = a.m, w = j1 - j0;
  std::vector<double> mean((size_t)w, 0.0), m2((size_t)w, 0.0);
  for (long i0 = 0; i0 < n; i0 += kRowChunk) {
    const long i1 = n - i0 < kRowChunk ? n : i0 + kRowChunk;
    for (long jb = j0; jb < j1; jb += kColBlock)
      moments_tile(Block(jb, j1), a.x + jb, m, i0, i1, &mean[jb - j0], &m2[jb - j0],
                   NextTile(a.x, m, n, i0, i1, jb, j0, j1));
  }
  const double mom = a.momentum;
  for (long c = 0; c < w; ++c) {
    const long j = j0 + c;
    const double invstd = 1.0 / std::sqrt(m2[c] / (double)n + (double)a.eps);
    a.save_mean[j] = (float)mean[c];
    a.save_invstd[j] = (float)invstd;
    scale[j] = (float)((a.gamma ? (double)a.gamma[j] : 1.0) * invstd);
    shift[j] = a.beta ? a.beta[j] : 0.0f;
    if (a.running_mean) a.running_mean[j] = (float)((1.0 - mom) * a.running_mean[j] + mom * mean[c]);
    if (a.running_var)
      a.running_var[j] = (float)((1.0 - mom) * a.running_var[j] + mom * (m2[c] / (double)(n - 1)));
  }
}

// Folds rows i0 .. i1-1 of one block into s0 += sum dy and s1 += sum dy * (x - mean),
// fetching the next tile of dy and of x.
void backward_tile(const Block& b, const float* dy, const float* x, const float* mean, long m,
                   long i0, long i1, double* s0, double* s1, const NextTile& next_dy,
                   const NextTile& next_x) {
  V a0[kVecs], a1[kVecs], vmean[kVecs];
  float tmp[W];
  for (int v = 0; v < kVecs; ++v) {
    a0[v] = a1[v] = V::zero();
    vmean[v] = b.nv[v] ? ld(mean + v * W, b.nv[v]) : V::zero();
  }
  for (long i = i0; i < i1; ++i) {
    next_dy.fetch(i - i0, m);
    next_x.fetch(i - i0, m);
    for (int v = 0; v < b.nvecs; ++v) {
      const long o = i * m + v * W;
      const V g = ld(dy + o, b.nv[v]);
      a0[v] = a0[v] + g;
      a1[v] = V::fma(g, ld(x + o, b.nv[v]) - vmean[v], a1[v]);
    }
  }
  for (int v = 0; v < b.nvecs; ++v) {
    a0[v].store(tmp);
    for (int t = 0; t < b.nv[v]; ++t) s0[v * W + t] += tmp[t];
    a1[v].store(tmp);
    for (int t = 0; t < b.nv[v]; ++t) s1[v * W + t] += tmp[t];
  }
}

// The sums of columns [j0, j1): dbeta, dgamma, and the columns' coefficients of
// dx = ca * dy + cb * (x - mean) + cc (arrays indexed by column).
void backward_stats(const BnBackwardArgs& a, long j0, long j1, float* ca, float* cb, float* cc) {
  const long n = a.n, m = a.m, w = j1 - j0;
  std::vector<double> s0((size_t)w, 0.0), s1((size_t)w, 0.0);
  for (long i0 = 0; i0 < n; i0 += kRowChunk) {
    const long i1 = n - i0 < kRowChunk ? n : i0 + kRowChunk;
    for (long jb = j0; jb < j1; jb += kColBlock)
      backward_tile(Block(jb, j1), a.dy + jb, a.x + jb, a.mean + jb, m, i0, i1, &s0[jb - j0],
                    &s1[jb - j0], NextTile(a.dy, m, n, i0, i1, jb, j0, j1),
                    NextTile(a.x, m, n, i0, i1, jb, j0, j1));
  }
  // ca = g = gamma * invstd, cb = -g * invstd * dgamma / n, cc = -g * dbeta / n.
  for (long c = 0; c < w; ++c) {
    const long j = j0 + c;
    const double invstd = a.invstd[j];
    const double dbeta = s0[c], dgamma = s1[c] * invstd;
    if (a.dbeta) a.dbeta[j] = (float)dbeta;
    if (a.dgamma) a.dgamma[j] = (float)dgamma;
    const double g = (a.gamma ? (double)a.gamma[j] : 1.0) * invstd;
    ca[j] = (float)g;
    cb[j] = (float)(-g * invstd * dgamma / (double)n);
    cc[j] = (float)(-g * dbeta / (double)n);
  }
}

// dx for rows i0 .. i1-1, every column.
void backward_rows(const BnBackwardArgs& a, const float* ca, const float* cb, const float* cc,
                   long i0, long i1) {
  const long m = a.m, wv = m - m % W;
  const int nt = (int)(m - wv);
  const float* mean = a.mean;
  for (long i = i0; i < i1; ++i) {
    const float* xr = a.x + i * m;
    const float* gr = a.dy + i * m;
    float* dxr = a.dx + i * m;
    for (long j = 0; j < wv; j += W) {
      const V t = V::fma(V::load(xr + j) - V::load(mean + j), V::load(cb + j), V::load(cc + j));
      V::fma(V::load(gr + j), V::load(ca + j), t).store(dxr + j);
    }
    if (nt) {
      const V t = V::fma(V::load_n(xr + wv, nt) - V::load_n(mean + wv, nt), V::load_n(cb + wv, nt),
                         V::load_n(cc + wv, nt));
      V::fma(V::load_n(gr + wv, nt), V::load_n(ca + wv, nt), t).store_n(dxr + wv, nt);
    }
  }
}

// Runs body(i0, i1) on the row chunks, split across threads.
template <class Body>
void row_chunks(long n, int threads, Body body) {
  const long nchunks = (n + kRowChunk - 1) / kRowChunk;
  auto chunk = [&](long k) {
    const long i0 = k * kRowChunk;
    body(i0, n - i0 < kRowChunk ? n : i0 + kRowChunk);
  };
  if (threads <= 1) {
    for (long k = 0; k < nchunks; ++k) chunk(k);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long k = 0; k < nchunks; ++k) chunk(k);
}

}  // namespace

// The statistics column by column (each column reduced in row order whatever the thread
// count), then the elementwise pass row by row (the same bits either way). Split by
// columns like the statistics, each thread wrote half of every row; by rows, each writes
// one contiguous run of whole rows, which measured faster in the train forward and the
// backward at large and small batches (docs/benchmarks.md, "Measurement history").
void bn_train(const BnTrainArgs& a) {
  std::vector<float> scale((size_t)a.m), shift((size_t)a.m);
  const int threads = threads_for(a.n, a.m);
  column_ranges(a.m, threads, [&](long j0, long j1) {
    train_stats(a, j0, j1, scale.data(), shift.data());
  });
  row_chunks(a.n, threads, [&](long i0, long i1) {
    affine_rows(a.y, a.x, a.save_mean, scale.data(), shift.data(), a.m, i0, i1);
  });
}

void bn_backward(const BnBackwardArgs& a) {
  std::vector<float> ca((size_t)a.m), cb((size_t)a.m), cc((size_t)a.m);
  const int threads = threads_for(a.n, a.m);
  column_ranges(a.m, threads, [&](long j0, long j1) {
    backward_stats(a, j0, j1, ca.data(), cb.data(), cc.data());
  });
  row_chunks(a.n, threads, [&](long i0, long i1) {
    backward_rows(a, ca.data(), cb.data(), cc.data(), i0, i1);
  });
}

void bn_affine(const BnAffineArgs& a) {
  row_chunks(a.n, threads_for(a.n, a.m), [&](long i0, long i1) {
    affine_rows(a.y, a.x, a.center, a.scale, a.shift, a.m, i0, i1);
  });
}
