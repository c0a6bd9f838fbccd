// Internal: the size of one core's L2 cache, for cache blocking that adapts to the CPU
// it runs on (1 MiB on Zen 4, 2 MiB on Sapphire Rapids). 0 where the C library cannot
// say (sysconf has no such query outside glibc): callers keep their compiled defaults.
#pragma once
#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace fastdl {

inline long l2_cache_bytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  static const long bytes = [] {
    const long b = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return b > 0 ? b : 0L;
  }();
  return bytes;
#else
  return 0;
#endif
}

}  // namespace fastdl
