// Internal: cache sizes as the C library reports them (CPUID under glibc), for choices
// that adapt to the CPU the code runs on. 0 where the C library cannot say (sysconf has
// no such query outside glibc): callers keep their compiled defaults.
#pragma once
#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace fastdl {

// One core's L2 cache, for cache blocking (1 MiB on Zen 4, 2 MiB on Sapphire Rapids).
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

// The last-level cache, shared by the cores (L3; L2 where there is none): whether a
// pass over a buffer a kernel wrote a moment ago still finds it in cache. Under a
// hypervisor it is what the VM is told, which need not be the cache its cores actually
// get.
inline long last_level_cache_bytes() {
#ifdef _SC_LEVEL3_CACHE_SIZE
  static const long bytes = [] {
    const long b = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return b > 0 ? b : l2_cache_bytes();
  }();
  return bytes;
#else
  return l2_cache_bytes();
#endif
}

}  // namespace fastdl
