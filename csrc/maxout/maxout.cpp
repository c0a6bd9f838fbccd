// Maxout: the plain passes (forward from z, backward scatter) and the dense layer built
// on the GEMM's maxout epilogue. The passes are memory-bound; each row is independent.
#include "fastdl/maxout.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "fastdl/dense.h"
#include "fastdl/gemm.h"
#include "fastdl/runtime.h"
#include "runtime/scratch.h"

namespace fastdl {

namespace {

void check_pieces(int pieces) {
  if (pieces < 1 || pieces > 255)
    throw std::invalid_argument("pieces: expected 1 <= pieces <= 255 (argmax is uint8), got " +
                                std::to_string(pieces));
}

// Every argmax entry must be a piece index: the largest one decides (a pass over bytes,
// much less than the floats the backward writes); the first bad one is reported.
void check_argmax(const uint8_t* argmax, long size, long m, int pieces) {
  uint8_t largest = 0;
  for (long i = 0; i < size; ++i) largest = argmax[i] > largest ? argmax[i] : largest;
  if (largest < pieces) return;
  for (long i = 0; i < size; ++i)
    if (argmax[i] >= pieces)
      throw std::out_of_range("argmax: entry (" + std::to_string(i / m) + ", " + std::to_string(i % m) +
                              ") is " + std::to_string(argmax[i]) + ", not a piece index in [0, " +
                              std::to_string(pieces) + ")");
}

int row_threads(long n, long work) { return n < 2 || work < (1l << 15) ? 1 : get_num_threads(); }

// One unit's max over k pieces: strict > keeps the first maximum, and a NaN piece wins
// over any number (the first NaN is kept), so NaN propagates as in PyTorch's max. The
// same scan as the GEMM epilogue's, so fused and unfused results match bit for bit.
template <int K>
inline void group_max(const float* z, int k, float* y, uint8_t* arg) {
  const int kk = K > 0 ? K : k;
  float best = z[0];
  int a = 0;
  for (int t = 1; t < kk; ++t)
    if (z[t] > best || (z[t] != z[t] && best == best)) { best = z[t]; a = t; }
  *y = best;
  *arg = (uint8_t)a;
}

template <int K>
void maxout_rows(float* y, uint8_t* argmax, const float* z, long n, long m, int k) {
#pragma omp parallel for schedule(static) num_threads(row_threads(n, n * m * k))
  for (long i = 0; i < n; ++i) {
    const float* zi = z + i * m * k;
    for (long j = 0; j < m; ++j) group_max<K>(zi + j * k, k, y + i * m + j, argmax + i * m + j);
  }
}

}  // namespace

void maxout_forward(float* y, uint8_t* argmax, const float* z, long n, long m, int pieces) {
  check_pieces(pieces);
  if (n <= 0 || m <= 0) return;
  switch (pieces) {  // the common piece counts get unrolled scans
    case 2: maxout_rows<2>(y, argmax, z, n, m, pieces); return;
    case 3: maxout_rows<3>(y, argmax, z, n, m, pieces); return;
    case 4: maxout_rows<4>(y, argmax, z, n, m, pieces); return;
    default: maxout_rows<0>(y, argmax, z, n, m, pieces); return;
  }
}

void maxout_backward(float* dz, const float* dy, const uint8_t* argmax, long n, long m,
                     int pieces) {
  check_pieces(pieces);
  if (n <= 0 || m <= 0) return;
  check_argmax(argmax, n * m, m, pieces);  // before dz is written: a refused call changes nothing
  const long k = pieces;
#pragma omp parallel for schedule(static) num_threads(row_threads(n, n * m * k))
  for (long i = 0; i < n; ++i) {
    float* dzi = dz + i * m * k;
    std::memset(dzi, 0, sizeof(float) * m * k);
    for (long j = 0; j < m; ++j) dzi[j * k + argmax[i * m + j]] = dy[i * m + j];
  }
}

void dense_maxout_forward(float* y, uint8_t* argmax, const float* x, const float* w,
                          const float* b, long n, long k, long m, int pieces,
                          Precision precision) {
  check_pieces(pieces);
  if (n <= 0 || m <= 0) return;
  const long cols = m * pieces;
  static thread_local ScratchBuffer c_buf, val_buf, idx_buf;
  GemmMaxout mo;
  mo.pieces = pieces;
  mo.y = y;
  mo.argmax = argmax;
  mo.ldy = m;
  mo.part_ld = gemm_maxout_parts(cols);
  mo.part_val = val_buf.get<float>((size_t)(n * mo.part_ld));
  mo.part_idx = idx_buf.get<uint8_t>((size_t)(n * mo.part_ld));
  GemmEpilogue ep;
  ep.bias = b;
  ep.maxout = &mo;
  // C only carries partial sums between K blocks (k > KC); the last block never stores
  // it. Pages of the scratch that are never touched cost nothing.
  float* c = c_buf.get<float>((size_t)(n * cols));
  sgemm(n, cols, k, x, k, 1, w, cols, 1, c, cols, false, &ep, precision);
}

void dense_maxout_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                           const float* w, const uint8_t* argmax, long n, long k, long m,
                           int pieces, const WeightUpdate* update, Precision precision) {
  check_pieces(pieces);
  static thread_local ScratchBuffer dz_buf;
  const long cols = m * pieces;
  float* dz = dz_buf.get<float>((size_t)(n * cols > 0 ? n * cols : 1));
  maxout_backward(dz, dy, argmax, n, m, pieces);
  // A linear dense backward from dz: db = column sums, then dw and dx GEMMs.
  dense_backward(dx, dw, db, nullptr, dz, x, w, nullptr, n, k, cols, Activation::linear, 0.0f,
                 nullptr, update, precision);
}

}  // namespace fastdl
