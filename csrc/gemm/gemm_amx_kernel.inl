// The AMX micro-kernel: a 32 x 32 tile of C in four 16 x 16 fp32 tile registers, updated
// by TDPBF16PS from two A tiles (16 rows x 32 k of bf16, from two consecutive A panels)
// and two B tiles (16 pair-rows x 16 columns, the VNNI halves of a B panel). Included
// inside namespace fastdl::amx by gemm_amx.cpp, before gemm_bf16_loops.inl.
//
// Tile registers: 0-3 C (0: rows 0-15 x columns 0-15, 1: rows 0-15 x 16-31, 2 and 3 the
// rows 16-31), 4-5 A, 6-7 B; every one configured as 16 rows of 64 bytes. Edge tiles
// read the zero padding of the panels; only the tiles that hold real rows or columns are
// computed and stored.

// The tile configuration (palette 1), loaded on the calling thread for the duration of
// a GEMM block and released after it: a thread keeps no tile state between calls (other
// code on it, another library's AMX kernels or a signal handler, may configure its own;
// released tile state also keeps context switches from saving 8 KiB per thread).
struct TileUnit {
  TileUnit() {
    struct alignas(64) {
      uint8_t palette = 1, start_row = 0;
      uint8_t reserved[14] = {};
      uint16_t colsb[16] = {};
      uint8_t rows[16] = {};
    } config;
    for (int t = 0; t < 8; ++t) {
      config.colsb[t] = 64;
      config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
  }
  ~TileUnit() { _tile_release(); }
  TileUnit(const TileUnit&) = delete;
  TileUnit& operator=(const TileUnit&) = delete;
};

// RT row tiles (16 rows each) x CT column tiles (16 columns each) of C, row stride ldc
// floats, over kcp (a multiple of 32), onto C's values (load_c) or zero.
template <int RT, int CT>
__attribute__((noinline)) static void amx_tile(int kcp, const bf16* a, long a_stride,
                                               const bf16* b, float* c, long ldc, bool load_c) {
  const long stride = ldc * (long)sizeof(float);
  float* c1 = c + 16 * ldc;
  if (load_c) {
    _tile_loadd(0, c, stride);
    if (CT == 2) _tile_loadd(1, c + 16, stride);
    if (RT == 2) _tile_loadd(2, c1, stride);
    if (RT == 2 && CT == 2) _tile_loadd(3, c1 + 16, stride);
  } else {
    _tile_zero(0);
    if (CT == 2) _tile_zero(1);
    if (RT == 2) _tile_zero(2);
    if (RT == 2 && CT == 2) _tile_zero(3);
  }
  const bf16* a1 = a + a_stride;  // the next A panel
  for (int kb = 0; kb < kcp / 32; ++kb) {
    const bf16* bk = b + (long)kb * 16 * NR * 2;  // 16 pair-rows of the B panel
    _tile_loadd(4, a + (long)kb * MR * 32, 64);
    _tile_loadd(6, bk, NR * 2 * (long)sizeof(bf16));
    if (CT == 2) _tile_loadd(7, bk + 32, NR * 2 * (long)sizeof(bf16));
    _tile_dpbf16ps(0, 4, 6);
    if (CT == 2) _tile_dpbf16ps(1, 4, 7);
    if (RT == 2) {
      _tile_loadd(5, a1 + (long)kb * MR * 32, 64);
      _tile_dpbf16ps(2, 5, 6);
      if (CT == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, stride);
  if (CT == 2) _tile_stored(1, c + 16, stride);
  if (RT == 2) _tile_stored(2, c1, stride);
  if (RT == 2 && CT == 2) _tile_stored(3, c1 + 16, stride);
}

// gemm_bf16_loops.inl's micro-kernel: the variant that covers rows x cols.
static FASTDL_INLINE void bf16_tile(int kcp, const bf16* a, long a_stride, const bf16* b,
                                    float* c, long ldc, bool load_c, int rows, int cols) {
  if (rows > 16) {
    if (cols > 16) amx_tile<2, 2>(kcp, a, a_stride, b, c, ldc, load_c);
    else amx_tile<2, 1>(kcp, a, a_stride, b, c, ldc, load_c);
  } else {
    if (cols > 16) amx_tile<1, 2>(kcp, a, a_stride, b, c, ldc, load_c);
    else amx_tile<1, 1>(kcp, a, a_stride, b, c, ldc, load_c);
  }
}
