// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11;
// the Random123 constants) and the dropout keep rule built on it. Plain scalar C++:
// the reference every vectorised path (and the GPU kernels) must match bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

namespace fastdl {

struct Philox4x32 {
  static constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  static constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  static constexpr int kRounds = 10;
};

// out = Philox4x32-10(counter, key).
inline void philox4x32(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < Philox4x32::kRounds; ++r) {
    if (r) { k0 += Philox4x32::kWeyl0; k1 += Philox4x32::kWeyl1; }
    const uint64_t p0 = (uint64_t)Philox4x32::kMul0 * c0;
    const uint64_t p1 = (uint64_t)Philox4x32::kMul1 * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c0 = n0; c1 = (uint32_t)p1; c2 = n2; c3 = (uint32_t)p0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Everything the dropout keep decision depends on besides the element index
// (docs/kernels.md, "Dropout"): key = (seed lo, seed hi), counter words 2 and 3 =
// (step, stream), and the threshold on the top 24 bits of the random word.
struct DropoutKey {
  uint32_t key0, key1, step, stream;
  // Element kept iff (word >> 8) >= threshold. u = (word >> 8) * 2^-24 is exact, so
  // u >= p  <=>  (word >> 8) >= ceil(p * 2^24), with p the float64 probability
  // (p * 2^24 is exact in double). threshold is in [0, 2^24] for p in [0, 1).
  uint32_t threshold;
};

inline uint32_t dropout_threshold(double p) { return (uint32_t)std::ceil(p * 16777216.0); }

inline DropoutKey make_dropout_key(uint64_t seed, uint32_t step, uint32_t stream, double p) {
  return DropoutKey{(uint32_t)seed, (uint32_t)(seed >> 32), step, stream, dropout_threshold(p)};
}

// The keep decision for flat element i: the scalar reference for every kernel.
inline bool dropout_keep(const DropoutKey& k, uint64_t i) {
  const uint32_t counter[4] = {(uint32_t)(i >> 2), (uint32_t)(i >> 34), k.step, k.stream};
  const uint32_t key[2] = {k.key0, k.key1};
  uint32_t r[4];
  philox4x32(r, counter, key);
  return (r[i & 3] >> 8) >= k.threshold;
}

}  // namespace fastdl
