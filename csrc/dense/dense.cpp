#include "fastdl/dense.h"

#include "gemm/gemm_isa.h"
#include "fastdl/gemm.h"
#include "fastdl/runtime.h"
#include "runtime/scratch.h"

#include <new>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num() { return 0; }
static inline int omp_get_num_threads() { return 1; }
#endif

namespace fastdl {

namespace {
// Below this many flops per GEMM the fork costs more than running the second GEMM
// after the first: a 16 x 16 x 16 backward (8e3 flops per GEMM) was slower side by
// side, 32 x 64 x 10 (4e4) and larger faster (docs/benchmarks.md, "Measurement history").
constexpr double kSideBySideMinFlops = 2.0e4;

// Whether the backward's two GEMMs run at once, one per thread: when neither would be
// split over threads on its own (784-64x4-10 at batch 32: the 64 x 64 layers).
bool side_by_side(long n, long k, long m) {
#ifdef _OPENMP
  const double flops = 2.0 * (double)n * (double)k * (double)m;
  return get_num_threads() >= 2 && omp_get_level() == 0 &&
         flops < kGemmParallelMinFlops && flops >= kSideBySideMinFlops;
#else
  (void)n, (void)k, (void)m;
  return false;
#endif
}
}  // namespace

void dense_forward(float* y, float* z, const float* x, const float* w, const float* b, long n,
                   long k, long m, Activation act, float alpha, const float* alpha_vec,
                   Precision precision) {
  GemmEpilogue ep;
  ep.bias = b;
  ep.act = act;
  ep.alpha = alpha;
  ep.alpha_vec = act == Activation::prelu ? alpha_vec : nullptr;
  ep.z = z;
  ep.ldz = m;
  // x (n, k) row-major, w (k, m) row-major.
  sgemm(n, m, k, x, k, 1, w, m, 1, y, m, false, &ep, precision);
}


void dense_backward(float* dx, float* dw, float* db, float* dalpha, const float* dy,
                    const float* x, const float* w, const float* s, long n, long k, long m,
                    Activation act, float alpha, const float* alpha_vec,
                    const WeightUpdate* update, Precision precision) {
  if (update && k > 0 && m > 0) {
    if (!update->step)
      throw std::invalid_argument("update: the WeightUpdate has no optimizer step");
    if (update->offset < 0 || update->offset + k * m > update->step->size())
      throw std::out_of_range("update: w (" + std::to_string(k * m) + " elements at offset " +
                              std::to_string(update->offset) + ") is outside the step's buffer of " +
                              std::to_string(update->step->size()));
  }
  // An update that does not keep dw still needs C for the sums between K blocks.
  static thread_local ScratchBuffer dw_scratch;
  if (!dw && update && k > 0 && m > 0) dw = dw_scratch.get<float>((size_t)(k * m));
  if (n <= 0) {  // no rows: every sum is empty
    for (long j = 0; j < m; ++j) {
      if (db) db[j] = 0.0f;
      if (dalpha && act == Activation::prelu) dalpha[j] = 0.0f;
    }
    for (long i = 0; i < k * m; ++i) dw[i] = 0.0f;
    if (update && k > 0 && m > 0) update->step->apply_block(dw, m, update->offset, m, k, m);
    return;
  }
  // dz = dy * f'(s) is never stored: both GEMMs form it as they pack dy (GemmDz), and
  // the dw GEMM reduces db (and prelu's dalpha) in the same packing pass.
  const bool linear = act == Activation::linear;
  GemmDz dz;
  dz.s = linear ? nullptr : s;
  dz.act = act;
  dz.alpha = alpha;
  dz.alpha_vec = act == Activation::prelu ? alpha_vec : nullptr;
  dz.db = db;
  dz.dalpha = act == Activation::prelu ? dalpha : nullptr;
  // dw (k, m) = x^T (k, n) @ dz (n, m)
  GemmArgs gw{k, m, n, x, 1, k, dy, m, 1, dw, m, false, nullptr};
  gw.precision = precision;
  if (k <= 0) {
    // No inputs, so no dw, but db still needs its pass: a one-row GEMM of zeros packs
    // dz and reduces it; its row of C is thrown away.
    static thread_local ScratchBuffer scratch;
    float* buf = scratch.get<float>((size_t)(n + m));
    for (long i = 0; i < n; ++i) buf[i] = 0.0f;
    gw = GemmArgs{1, m, n, buf, 1, 1, dy, m, 1, buf + n, m, false, nullptr};
    gw.precision = precision;
  }
  gw.dz_b = &dz;
  // dx (n, k) = dz (n, m) @ w^T (m, k); no reductions on this side.
  auto dx_gemm = [&] {
    GemmDz dz_a = dz;
    dz_a.db = dz_a.dalpha = nullptr;
    GemmArgs gx{n, k, m, dy, m, 1, w, 1, m, dx, k, false, nullptr};
    gx.dz_a = &dz_a;
    gx.precision = precision;
    sgemm(gx);
  };
  if (!update || k <= 0) {
    if (dx && k > 0 && side_by_side(n, k, m)) {
      // Independent (no update rewrites w) and equal in cost (n*k*m FMAs each), each
      // too small to split over threads: one thread each instead of one after the
      // other. Each is still computed whole by one thread, so the result is the same.
      // dx on the calling thread, which ran this layer's forward GEMM (too small to
      // split) and, in dense_stack_train's step, updates its w: dx reads w and s from
      // that core's cache, and its dx is the next layer down's dy, read on the same
      // core again; the weight gradient streams x and dz through its packing on the
      // other core. This placement matters most where a cache line moving between the
      // cores is slow (a loaded VM).
      bool failed = false;
#pragma omp parallel num_threads(2)
      {
        try {
          // One thread does both where OpenMP gives fewer than asked (OMP_THREAD_LIMIT,
          // OMP_DYNAMIC): dx was left unwritten there.
          const int t = omp_get_thread_num(), T = omp_get_num_threads();
          if (t == 0) dx_gemm();
          if (t == T - 1) sgemm(gw);
        } catch (...) {  // an exception must not leave an OpenMP region
#pragma omp atomic write
          failed = true;
        }
      }
      if (failed) throw std::bad_alloc();
      return;
    }
    sgemm(gw);
    if (dx) dx_gemm();
    return;
  }
  // The update rewrites w: dx must read it first.
  if (dx) dx_gemm();
  struct Target {
    const OptimizerStep* step;
    long offset, ld;
  } target{update->step, update->offset, m};
  GemmTileSink sink;
  sink.fn = [](const void* ctx, const float* tile, long ldt, long row0, long col0, long rows,
               long cols) {
    const Target& t = *static_cast<const Target*>(ctx);
    t.step->apply_block(tile, ldt, t.offset + row0 * t.ld + col0, t.ld, rows, cols);
  };
  sink.prefetch = [](const void* ctx, long row0, long col0, long rows, long cols) {
    const Target& t = *static_cast<const Target*>(ctx);
    t.step->prefetch_block(t.offset + row0 * t.ld + col0, t.ld, rows, cols);
  };
  sink.ctx = &target;
  sink.store_c = update->keep_dw;
  GemmEpilogue ep;
  ep.sink = &sink;
  gw.ep = &ep;
  sgemm(gw);
}

}  // namespace fastdl
