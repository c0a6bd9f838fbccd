// dz = dy * f'(s) with db (and prelu's dalpha) reduced in the same pass. Included
// inside namespace fastdl::<isa> after defining V. Threads split the columns into
// blocks, so every column sum runs over the rows in order (thread-count independent).

constexpr int kColBlock = 64;  // columns per task: 64 floats = one 256-byte stripe per row
constexpr int kVecs = kColBlock / V::width;

template <class Act>
static void dz_block(const DzArgs& a, long j0) {
  const int cols = (int)(a.m - j0 < kColBlock ? a.m - j0 : kColBlock);
  V db[kVecs], dal[kVecs], alpha[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    db[v] = V::zero();
    dal[v] = V::zero();
    const int nv = cols - v * V::width;
    if (nv <= 0) { alpha[v] = V::zero(); continue; }
    alpha[v] = a.alpha_vec ? V::load_n(a.alpha_vec + j0 + v * V::width,
                                       nv < V::width ? nv : V::width)
                           : V::set1(a.alpha);
  }
  for (long i = 0; i < a.n; ++i) {
    const long off = i * a.m + j0;
    for (int v = 0; v < kVecs; ++v) {
      const int nv = cols - v * V::width;
      if (nv <= 0) break;
      const long o = off + v * V::width;
      const bool full = nv >= V::width;
      V dy = full ? V::load(a.dy + o) : V::load_n(a.dy + o, nv);
      V dz = dy;
      if (a.s) {
        V s = full ? V::load(a.s + o) : V::load_n(a.s + o, nv);
        dz = dy * Act::df(s, alpha[v]);
        // min(0, s), not min(s, 0): x86 min returns its second operand when unordered,
        // so a NaN pre-activation reaches dalpha as it does in PyTorch.
        if (a.dalpha) dal[v] = V::fma(dy, V::min(V::zero(), s), dal[v]);
      }
      if (a.dz) full ? dz.store(a.dz + o) : dz.store_n(a.dz + o, nv);
      db[v] = db[v] + dz;
    }
  }
  float tmp[V::width];
  for (int v = 0; v < kVecs; ++v) {
    const int nv = cols - v * V::width;
    if (nv <= 0) break;
    const int cnt = nv < V::width ? nv : V::width;
    if (a.db) { db[v].store(tmp); for (int t = 0; t < cnt; ++t) a.db[j0 + v * V::width + t] = tmp[t]; }
    if (a.dalpha) { dal[v].store(tmp); for (int t = 0; t < cnt; ++t) a.dalpha[j0 + v * V::width + t] = tmp[t]; }
  }
}

void dense_dz(const DzArgs& a) {
  const long nblocks = (a.m + kColBlock - 1) / kColBlock;
  const int nthreads = (double)a.n * a.m < 3.2e4 ? 1 : get_num_threads();
  ops::dispatch_activation(a.act, [&](auto act) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long blk = 0; blk < nblocks; ++blk) dz_block<decltype(act)>(a, blk * kColBlock);
  });
}
