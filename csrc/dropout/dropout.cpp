#include "fastdl/dropout.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "dropout/dropout_isa.h"
#include "fastdl/dense.h"
#include "fastdl/gemm.h"
#include "fastdl/philox.h"
#include "fastdl/runtime.h"
#include "runtime/scratch.h"
#include "runtime/x86_paths.h"

namespace fastdl {

void check_dropout_p(double p) {
  if (!(p >= 0.0 && p < 1.0))
    throw std::invalid_argument("p: the drop probability must satisfy 0 <= p < 1, got " +
                                std::to_string(p) + (p == 1.0 ? " (p = 1 drops everything)" : ""));
}

float dropout_scale(double p, bool scale) { return scale ? (float)(1.0 / (1.0 - p)) : 1.0f; }

void dropout_forward(float* y, uint8_t* mask, const float* x, long size, double p,
                     uint64_t seed, uint32_t step, uint32_t stream, bool scale,
                     uint64_t offset) {
  check_dropout_p(p);
  if (size <= 0) return;
  const DropoutFwdArgs a{y, mask, x, size, make_dropout_key(seed, step, stream, p),
                         dropout_scale(p, scale), offset};
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::dropout_forward(a); return;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::dropout_forward(a); return;)
    case Isa::generic: break;
  }
  generic::dropout_forward(a);
}

void dropout_backward(float* dx, const float* dy, const uint8_t* mask, long size, double p,
                      bool scale) {
  check_dropout_p(p);
  if (size <= 0) return;
  const DropoutBwdArgs a{dx, dy, mask, size, dropout_scale(p, scale)};
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::dropout_backward(a); return;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::dropout_backward(a); return;)
    case Isa::generic: break;
  }
  generic::dropout_backward(a);
}

uint64_t dropout_keep_bits_at(uint64_t c, const DropoutKey& key, int* nbits) {
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(return avx512::dropout_keep_bits_at(c, key, nbits);)
    case Isa::avx2: FASTDL_X86_ONLY(return avx2::dropout_keep_bits_at(c, key, nbits);)
    case Isa::generic: break;
  }
  return generic::dropout_keep_bits_at(c, key, nbits);
}

void dense_dropout_forward(float* y, uint8_t* mask, float* z, const float* x, const float* w,
                           const float* b, long n, long k, long m, Activation act, double p,
                           uint64_t seed, uint32_t step, uint32_t stream, bool scale,
                           float alpha, const float* alpha_vec, uint64_t offset,
                           Precision precision) {
  check_dropout_p(p);
  if (n <= 0 || m <= 0) return;
  // Tile rows OR their bits into the bytes they share with a neighbour (odd m).
  std::memset(mask, 0, (size_t)((n * m + 7) / 8));
  GemmDropout drop;
  drop.key = make_dropout_key(seed, step, stream, p);
  drop.scale = dropout_scale(p, scale);
  drop.row_len = m;
  drop.mask = mask;
  drop.offset = offset;
  GemmEpilogue ep;
  ep.bias = b;
  ep.act = act;
  ep.alpha = alpha;
  ep.alpha_vec = act == Activation::prelu ? alpha_vec : nullptr;
  ep.z = z;
  ep.ldz = m;
  ep.dropout = &drop;
  sgemm(n, m, k, x, k, 1, w, m, 1, y, m, false, &ep, precision);
}

void dense_dropout_backward(float* dx, float* dw, float* db, float* dalpha, const float* dy,
                            const float* x, const float* w, const float* s, const uint8_t* mask,
                            long n, long k, long m, Activation act, double p, bool scale,
                            float alpha, const float* alpha_vec, const WeightUpdate* update,
                            Precision precision) {
  check_dropout_p(p);
  static thread_local ScratchBuffer dy_buf, s_buf;
  const long size = n * m;
  // The masked, scaled dy is the gradient reaching f(z); dense_backward does the rest.
  float* dy_kept = dy_buf.get<float>((size_t)(size > 0 ? size : 1));
  dropout_backward(dy_kept, dy, mask, size, p, scale);
  // Activations differentiated from y need f(z) itself: undo the scaling on kept units
  // (dropped ones have dy_kept = 0, whatever f'(0) is).
  const float sc = dropout_scale(p, scale);
  if (s && !activation_needs_z(act) && act != Activation::linear && sc != 1.0f) {
    float* s_un = s_buf.get<float>((size_t)size);
#pragma omp parallel for schedule(static) num_threads(size < (1l << 16) ? 1 : get_num_threads())
    for (long i = 0; i < size; ++i) s_un[i] = s[i] / sc;
    s = s_un;
  }
  dense_backward(dx, dw, db, dalpha, dy_kept, x, w, s, n, k, m, act, alpha, alpha_vec, update,
                 precision);
}

}  // namespace fastdl
