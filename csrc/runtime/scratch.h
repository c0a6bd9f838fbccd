// Internal: a per-thread scratch buffer, grown on demand and kept, so a kernel called
// in a training loop allocates nothing after its first call. 64-byte aligned.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace fastdl {

struct ScratchBuffer {
  void* p = nullptr;
  size_t cap = 0;  // bytes
  template <class T>
  T* get(size_t count) {
    const size_t bytes = ((count * sizeof(T) + 63) / 64) * 64 + 64;
    if (bytes > cap) {
      std::free(p);
      p = std::aligned_alloc(64, bytes);
      if (!p) { cap = 0; throw std::bad_alloc(); }
      cap = bytes;
    }
    return static_cast<T*>(p);
  }
  ~ScratchBuffer() { std::free(p); }
};

}  // namespace fastdl
