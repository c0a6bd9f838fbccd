#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "fastdl/runtime.h"

#ifdef _OPENMP
#include <omp.h>
// omp_pause_resource_all is OpenMP 5.0; GCC's libgomp has it from GCC 9 on while still
// reporting an older _OPENMP.
#if _OPENMP >= 201811 || (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9)
#define FASTDL_HAVE_OMP_PAUSE 1
#endif
#endif

namespace fastdl {

namespace {
// Process-wide, not OpenMP's per-thread ICV: omp_set_num_threads only affects the
// calling thread, so a count set from Python's main thread would be ignored by kernels
// called from any other Python thread. 0 = not set (OpenMP's default, the core count).
std::atomic<int> g_num_threads{0};

// Fork safety. libgomp keeps each thread's pool of workers across parallel regions, and
// a forked child inherits the forking thread's pool but none of its threads: the child's
// next parallel region waits for them forever. So before every fork the forking thread
// hands its pool back (omp_pause_resource_all: the workers exit); parent and child each
// start a fresh pool at their next parallel region. Where that cannot be done (a fork
// from inside a parallel region, or a runtime without the call) the child runs every
// kernel on one thread: a one-thread region never touches the pool.
std::atomic<bool> g_pool_kept_for_fork{false};
std::atomic<bool> g_single_thread_child{false};

void release_pool_before_fork() {
#ifdef FASTDL_HAVE_OMP_PAUSE
  g_pool_kept_for_fork.store(omp_pause_resource_all(omp_pause_soft) != 0, std::memory_order_relaxed);
#elif defined(_OPENMP)
  g_pool_kept_for_fork.store(true, std::memory_order_relaxed);
#endif
}

void after_fork_in_child() {
  if (g_pool_kept_for_fork.load(std::memory_order_relaxed))
    g_single_thread_child.store(true, std::memory_order_relaxed);
}

const int g_fork_handlers = pthread_atfork(release_pool_before_fork, nullptr, after_fork_in_child);
}  // namespace

int max_num_threads() {
#ifdef _OPENMP
  return std::max(kMinThreadCap, kThreadCapPerProcessor * omp_get_num_procs());
#else
  return kMinThreadCap;
#endif
}

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  if (n > max_num_threads())
    throw std::invalid_argument("set_num_threads: n must be <= " + std::to_string(max_num_threads()) +
                                " (the cap: " + std::to_string(kThreadCapPerProcessor) +
                                " threads per processor, at least " + std::to_string(kMinThreadCap) +
                                "), got " + std::to_string(n));
  g_num_threads.store(n, std::memory_order_relaxed);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

int get_num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
#ifdef _OPENMP
  if (g_single_thread_child.load(std::memory_order_relaxed)) return 1;
  return n > 0 ? n : omp_get_max_threads();
#else
  (void)n;
  return 1;
#endif
}

}  // namespace fastdl
