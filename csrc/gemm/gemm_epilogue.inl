// The fused epilogue: what happens to an output tile after its K reduction (bias,
// activation, z, dropout, or the maxout and tile-sink epilogues), written once over V for
// an MR x NR tile of accumulators. Included inside namespace fastdl::<isa> by the GEMM
// drivers (gemm_kernel.inl, gemm_bf16_loops.inl) after V, P, MR, NRV and NR are defined.

#include "gemm/gemm_epilogue_maxout.inl"

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

// The bias, activation, z and dropout epilogue with activation Act (or, with ep null, a
// plain store): adds the old C when load_c, then applies ep. rows/cols trim edge tiles.
template <class Act>
static FASTDL_INLINE void store_tile_typed(V (&acc)[MR][NRV], float* c, long ldc, bool load_c,
                                           const GemmEpilogue* ep, long col0, long row0,
                                           int rows, int cols) {
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

// A finished tile through the epilogue ep: the one place that switches on the activation,
// once per tile. Out of line, so that the loop nest and the micro-kernels are compiled
// once per path rather than once per activation; a tile's K loop dwarfs the call.
__attribute__((noinline)) static void store_tile_epilogue(V (&tile)[MR][NRV], float* c, long ldc,
                                                          bool load_c, const GemmEpilogue& ep,
                                                          long col0, long row0, int rows,
                                                          int cols) {
  if (ep.maxout) return store_tile_maxout(tile, c, ldc, load_c, &ep, col0, row0, rows, cols);
  if (ep.sink) return store_tile_sink(tile, c, ldc, load_c, *ep.sink, col0, row0, rows, cols);
  ops::dispatch_activation(ep.act, [&](auto act) {
    store_tile_typed<decltype(act)>(tile, c, ldc, load_c, &ep, col0, row0, rows, cols);
  });
}

// Writes the accumulators to C: adds the old C when load_c, and on the last K block
// (ep set) applies the epilogue. rows/cols trim edge tiles.
static FASTDL_INLINE void store_tile(V (&acc)[MR][NRV], float* c, long ldc, bool load_c,
                                     const GemmEpilogue* ep, long col0, long row0, int rows,
                                     int cols) {
  if (!ep)
    return store_tile_typed<ops::Act<Activation::linear>>(acc, c, ldc, load_c, nullptr, col0,
                                                          row0, rows, cols);
  // The epilogue takes a copy by reference: handing it acc itself would let acc's address
  // escape, and the accumulators of every micro-kernel would live in a stack array stored
  // and reloaded around each K step instead of in registers.
  V tile[MR][NRV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NRV; ++j) tile[i][j] = acc[i][j];
  store_tile_epilogue(tile, c, ldc, load_c, *ep, col0, row0, rows, cols);
}
