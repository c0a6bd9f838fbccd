// Portable 4-lane "vector" of plain floats: the fallback path for CPUs without AVX2 and
// the path the others are tested against. The compiler maps the lane loops to SSE2.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "fastdl/bf16.h"
#include "simd/inline.h"

namespace fastdl::simd {

// The one-line lane loops below read fine; silence GCC's indentation heuristic.
#pragma GCC diagnostic ignored "-Wmisleading-indentation"

struct VecGeneric {
  static constexpr int width = 4;
  struct Mask {
    bool m[4];
  };
  float v[4];

#define FASTDL_LANES for (int i = 0; i < 4; ++i)
  FASTDL_INLINE static VecGeneric zero() { return set1(0.f); }
  FASTDL_INLINE static VecGeneric set1(float x) { VecGeneric r; FASTDL_LANES r.v[i] = x; return r; }
  FASTDL_INLINE static VecGeneric load(const float* p) { VecGeneric r; FASTDL_LANES r.v[i] = p[i]; return r; }
  FASTDL_INLINE void store(float* p) const { FASTDL_LANES p[i] = v[i]; }
  FASTDL_INLINE static VecGeneric load_n(const float* p, int n) {
    VecGeneric r; FASTDL_LANES r.v[i] = i < n ? p[i] : 0.f; return r;
  }
  FASTDL_INLINE void store_n(float* p, int n) const { FASTDL_LANES if (i < n) p[i] = v[i]; }
  FASTDL_INLINE static VecGeneric map(VecGeneric a, float (*f)(float)) {
    VecGeneric r; FASTDL_LANES r.v[i] = f(a.v[i]); return r;
  }
  friend FASTDL_INLINE VecGeneric operator+(VecGeneric a, VecGeneric b) { FASTDL_LANES a.v[i] += b.v[i]; return a; }
  friend FASTDL_INLINE VecGeneric operator-(VecGeneric a, VecGeneric b) { FASTDL_LANES a.v[i] -= b.v[i]; return a; }
  friend FASTDL_INLINE VecGeneric operator*(VecGeneric a, VecGeneric b) { FASTDL_LANES a.v[i] *= b.v[i]; return a; }
  friend FASTDL_INLINE VecGeneric operator/(VecGeneric a, VecGeneric b) { FASTDL_LANES a.v[i] /= b.v[i]; return a; }
  FASTDL_INLINE static VecGeneric fma(VecGeneric a, VecGeneric b, VecGeneric c) {
    FASTDL_LANES c.v[i] += a.v[i] * b.v[i]; return c;
  }
  // max/min follow the x86 convention (second operand when unordered) so NaN
  // handling matches the SIMD paths.
  FASTDL_INLINE static VecGeneric max(VecGeneric a, VecGeneric b) { FASTDL_LANES a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return a; }
  FASTDL_INLINE static VecGeneric min(VecGeneric a, VecGeneric b) { FASTDL_LANES a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return a; }
  FASTDL_INLINE static VecGeneric abs(VecGeneric a) { FASTDL_LANES a.v[i] = std::fabs(a.v[i]); return a; }
  FASTDL_INLINE static VecGeneric sqrt(VecGeneric a) { FASTDL_LANES a.v[i] = std::sqrt(a.v[i]); return a; }
  FASTDL_INLINE static VecGeneric round(VecGeneric a) { FASTDL_LANES a.v[i] = std::nearbyint(a.v[i]); return a; }
  FASTDL_INLINE static Mask gt(VecGeneric a, VecGeneric b) { Mask m; FASTDL_LANES m.m[i] = a.v[i] > b.v[i]; return m; }
  FASTDL_INLINE static Mask lt(VecGeneric a, VecGeneric b) { Mask m; FASTDL_LANES m.m[i] = a.v[i] < b.v[i]; return m; }
  FASTDL_INLINE static Mask le(VecGeneric a, VecGeneric b) { Mask m; FASTDL_LANES m.m[i] = a.v[i] <= b.v[i]; return m; }
  FASTDL_INLINE static Mask eq(VecGeneric a, VecGeneric b) { Mask m; FASTDL_LANES m.m[i] = a.v[i] == b.v[i]; return m; }
  FASTDL_INLINE static Mask isnan(VecGeneric a) { Mask m; FASTDL_LANES m.m[i] = a.v[i] != a.v[i]; return m; }
  FASTDL_INLINE static VecGeneric select(Mask m, VecGeneric a, VecGeneric b) {
    FASTDL_LANES b.v[i] = m.m[i] ? a.v[i] : b.v[i]; return b;
  }
  FASTDL_INLINE static VecGeneric pow2i(VecGeneric n) { FASTDL_LANES n.v[i] = std::ldexp(1.f, (int)n.v[i]); return n; }
  FASTDL_INLINE static VecGeneric frexp(VecGeneric x, VecGeneric* e) {
    for (int i = 0; i < 4; ++i) {
      int k;
      x.v[i] = std::frexp(x.v[i], &k);
      e->v[i] = (float)k;
    }
    return x;
  }
  FASTDL_INLINE static void transpose(VecGeneric (&r)[4]) {
    for (int i = 0; i < 4; ++i)
      for (int j = i + 1; j < 4; ++j) {
        const float t = r[i].v[j];
        r[i].v[j] = r[j].v[i];
        r[j].v[i] = t;
      }
  }
  FASTDL_INLINE static VecGeneric round_to_bf16(VecGeneric a) { FASTDL_LANES a.v[i] = fastdl::round_to_bf16(a.v[i]); return a; }
  FASTDL_INLINE static float reduce_add(VecGeneric a) { return (a.v[0] + a.v[1]) + (a.v[2] + a.v[3]); }
#undef FASTDL_LANES
};

}  // namespace fastdl::simd
