// Packing of the fp32 operands into the micro-kernel's panels: A into MR-row panels
// (p-major inside a panel), B into NR-column panels, zero padded; a dz operand is formed
// as it is packed (gemm_dz.inl). Included inside namespace fastdl::<isa> by gemm_kernel.inl (see it for what the
// includer defines first).

// A(i0.., p0..) -> MR-row micro-panels, p-major inside a panel, zero padded. With t,
// A is dy and the panel holds dz = dy * f'(s) (row-major A only).
template <class Act>
static void pack_a_typed(int mc, int kc, const float* A, long rsa, long csa, float* dst,
                         int panel, const DzBlock* t) {
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

// pack_a_typed with t's activation (or none): one switch per panel.
static void pack_a(int mc, int kc, const float* A, long rsa, long csa, float* dst, int panel,
                   const DzBlock* t) {
  if (!t) return pack_a_typed<ops::Act<Activation::linear>>(mc, kc, A, rsa, csa, dst, panel, t);
  ops::dispatch_activation(t->act, [&](auto act) {
    pack_a_typed<decltype(act)>(mc, kc, A, rsa, csa, dst, panel, t);
  });
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
static void pack_b(int nc, int kc, const float* B, long rsb, long csb, float* dst, int panel,
                   const DzBlock* t) {
  const int j0 = panel * NR;
  const int cols = nc - j0 < NR ? nc - j0 : NR;
  float* d = dst + (long)panel * NR * kc;
  const float* b = B + j0 * csb;
  if (t) {
    // One switch on the activation per panel; only pack_b_dz is compiled per activation.
    ops::dispatch_activation(t->act, [&](auto act) {
      pack_b_dz<decltype(act)>(cols, kc, B, rsb, d, j0, *t);
    });
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

// The portable bf16 path (Precision::bf16 where the selected ISA has no bf16 units): the
// packed panels rounded to bf16 in place, after any dz is formed, so that the fp32
// micro-kernel multiplies bf16 values (the products are exact in fp32) and accumulates in
// fp32, as the bf16 units do.
static void round_packed_to_bf16(float* p, long count) {
  long i = 0;
  for (; i + V::width <= count; i += V::width) V::round_to_bf16(V::load(p + i)).store(p + i);
  if (i < count) V::round_to_bf16(V::load_n(p + i, (int)(count - i))).store_n(p + i, (int)(count - i));
}

void round_to_bf16(float* dst, const float* src, long n) {
  for (long i = 0; i < n; i += V::width) {
    const int w = n - i < V::width ? (int)(n - i) : V::width;
    V::round_to_bf16(V::load_n(src + i, w)).store_n(dst + i, w);
  }
}
