// Max-norm constraint over the columns of w (k, m), written once over V and included
// inside namespace fastdl::optim::<isa>. Threads take blocks of columns; each column's
// squared norm is summed over the rows in order (thread-count independent), then the
// block is rescaled while it is still warm in cache.

constexpr int kNormCols = 64;  // columns per task: one 256-byte stripe per row
constexpr int kNormVecs = kNormCols / V::width;

static void max_norm_block(float* w, long k, long m, float max_norm, long j0) {
  const int cols = (int)(m - j0 < kNormCols ? m - j0 : kNormCols);
  V acc[kNormVecs];
  for (int v = 0; v < kNormVecs; ++v) acc[v] = V::zero();
  for (long i = 0; i < k; ++i) {
    const float* row = w + i * m + j0;
    for (int v = 0; v < kNormVecs; ++v) {
      const int nv = cols - v * V::width;
      if (nv <= 0) break;
      const V x = nv >= V::width ? V::load(row + v * V::width) : V::load_n(row + v * V::width, nv);
      acc[v] = V::fma(x, x, acc[v]);
    }
  }
  // torch.renorm: scale = max_norm / (norm + 1e-7) where norm > max_norm, else 1.
  alignas(64) float scale[kNormCols];
  bool any = false;
  for (int v = 0; v < kNormVecs; ++v) acc[v].store(scale + v * V::width);
  for (int j = 0; j < cols; ++j) {
    const float norm = std::sqrt(scale[j]);
    scale[j] = norm > max_norm ? max_norm / (norm + 1e-7f) : 1.0f;
    any |= scale[j] != 1.0f;
  }
  if (!any) return;
  for (long i = 0; i < k; ++i) {
    float* row = w + i * m + j0;
    for (int v = 0; v < kNormVecs; ++v) {
      const int nv = cols - v * V::width;
      if (nv <= 0) break;
      const V f = V::load(scale + v * V::width);
      if (nv >= V::width) (V::load(row + v * V::width) * f).store(row + v * V::width);
      else (V::load_n(row + v * V::width, nv) * f).store_n(row + v * V::width, nv);
    }
  }
}

void max_norm(float* w, long k, long m, float max_norm) {
  const long nblocks = (m + kNormCols - 1) / kNormCols;
  const int nthreads = (double)k * m < 3.2e4 ? 1 : get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (long blk = 0; blk < nblocks; ++blk) max_norm_block(w, k, m, max_norm, blk * kNormCols);
}
