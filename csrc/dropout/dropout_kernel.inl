// The dropout passes, written once. Included inside namespace fastdl::<isa> after
// defining V (vector type) and P (its vectorised Philox). Work is cut into blocks of
// 64 elements = 8 mask bytes, so no two threads ever share a mask byte, and each
// block's bits depend only on (key, block index): any thread count gives the same
// result.

constexpr long kBlock = 64;
static_assert(kBlock % (4 * P::lanes) == 0, "a block is a whole number of Philox calls");
static_assert(kBlock % V::width == 0, "a block is a whole number of vectors");

// Keep bits of elements i0 .. i0 + 63 (i0 a multiple of 4): bit t <-> element i0 + t.
static FASTDL_INLINE uint64_t block_keep_bits(uint64_t i0, const DropoutKey& key) {
  uint64_t bits = 0;
#pragma GCC unroll 4
  for (int q = 0; q < kBlock / (4 * P::lanes); ++q)
    bits |= P::keep_bits((i0 >> 2) + (uint64_t)q * P::lanes, key) << (q * 4 * P::lanes);
  return bits;
}

// Keep bits of elements g .. g + 63 for any g (a shard's offset need not be aligned):
// the bits of the Philox counters from g & ~3 on, shifted down by g & 3, topped up
// from one more call when shifted.
static FASTDL_INLINE uint64_t keep_bits_from(uint64_t g, const DropoutKey& key) {
  const int sh = (int)(g & 3);
  const uint64_t base = g - (uint64_t)sh;
  uint64_t bits = block_keep_bits(base, key);
  if (sh) bits = (bits >> sh) | (P::keep_bits((base + kBlock) >> 2, key) << (kBlock - sh));
  return bits;
}

// out = keep ? in * scale : 0 for `count` <= 64 elements with keep bits `bits`.
static FASTDL_INLINE void apply_block(float* out, const float* in, uint64_t bits, V scale, int count) {
#pragma GCC unroll 16
  for (int j = 0; j < kBlock / V::width; ++j) {
    const int nj = count - j * V::width;
    if (nj <= 0) break;
    const bool full = nj >= V::width;
    V v = full ? V::load(in + j * V::width) : V::load_n(in + j * V::width, nj);
    v = V::select(P::lane_mask((uint32_t)(bits >> (j * V::width))), v * scale, V::zero());
    full ? v.store(out + j * V::width) : v.store_n(out + j * V::width, nj);
  }
}

static int dropout_threads(long size) { return size < (1l << 15) ? 1 : get_num_threads(); }

void dropout_forward(const DropoutFwdArgs& a) {
  const long nblocks = (a.size + kBlock - 1) / kBlock;
  const V scale = V::set1(a.scale);
#pragma omp parallel for schedule(static) num_threads(dropout_threads(a.size))
  for (long b = 0; b < nblocks; ++b) {
    const long i0 = b * kBlock;
    const int count = (int)(a.size - i0 < kBlock ? a.size - i0 : kBlock);
    uint64_t bits = keep_bits_from(a.offset + (uint64_t)i0, a.key);
    if (count < kBlock) bits &= (1ull << count) - 1;
    apply_block(a.y + i0, a.x + i0, bits, scale, count);
    std::memcpy(a.mask + b * 8, &bits, (size_t)(count + 7) / 8);  // little-endian (x86)
  }
}

void dropout_backward(const DropoutBwdArgs& a) {
  const long nblocks = (a.size + kBlock - 1) / kBlock;
  const V scale = V::set1(a.scale);
#pragma omp parallel for schedule(static) num_threads(dropout_threads(a.size))
  for (long b = 0; b < nblocks; ++b) {
    const long i0 = b * kBlock;
    const int count = (int)(a.size - i0 < kBlock ? a.size - i0 : kBlock);
    uint64_t bits = 0;
    std::memcpy(&bits, a.mask + b * 8, (size_t)(count + 7) / 8);
    apply_block(a.dx + i0, a.dy + i0, bits, scale, count);
  }
}

// The raw vectorised generator, for the tests: keep bits of elements 4c .. 4c +
// 4 * P::lanes - 1 at any counter c (also where the counter's low word wraps).
uint64_t dropout_keep_bits_at(uint64_t c, const DropoutKey& key, int* nbits) {
  *nbits = 4 * P::lanes;
  return P::keep_bits(c, key);
}
