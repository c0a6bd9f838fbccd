#pragma once
// Forces inlining of the small vector helpers the micro-kernels are built from.
#define FASTDL_INLINE inline __attribute__((always_inline))
