#include <atomic>
#include <stdexcept>
#include <string>

#include "fastdl/runtime.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastdl {

namespace {
// Process-wide, not OpenMP's per-thread ICV: omp_set_num_threads only affects the
// calling thread, so a count set from Python's main thread would be ignored by kernels
// called from any other Python thread. 0 = not set (OpenMP's default, the core count).
std::atomic<int> g_num_threads{0};
}  // namespace

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  g_num_threads.store(n, std::memory_order_relaxed);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

int get_num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
#ifdef _OPENMP
  return n > 0 ? n : omp_get_max_threads();
#else
  (void)n;
  return 1;
#endif
}

}  // namespace fastdl
