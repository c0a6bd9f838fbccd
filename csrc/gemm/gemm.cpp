#include "fastdl/gemm.h"

#include <stdexcept>

#include "fastdl/runtime.h"
#include "gemm/gemm_isa.h"
#include "runtime/x86_paths.h"

namespace fastdl {

namespace {
// A tile sink replaces the whole epilogue: nothing else may be asked of it.
bool sink_alone(const GemmEpilogue& ep) {
  return ep.sink && ep.sink->fn && !ep.bias && ep.act == Activation::linear && !ep.alpha_vec &&
         !ep.z && !ep.dropout && !ep.maxout;
}

// Which GEMM runs g: the bf16 units where the selected path has them; otherwise the
// fp32 path of the vector ISA, which rounds its packed panels for bf16.
enum class Path { amx, avx512_bf16, avx512, avx2, generic };

Path path_of(const GemmArgs& g) {
  if (g.precision == Precision::bf16) {
    switch (active_bf16_unit()) {
      case Bf16Unit::amx: return Path::amx;
      case Bf16Unit::avx512_bf16: return Path::avx512_bf16;
      case Bf16Unit::none: break;
    }
  }
  switch (active_isa()) {
    case Isa::avx512: return Path::avx512;
    case Isa::avx2: return Path::avx2;
    default: break;
  }
  return Path::generic;
}
}  // namespace

void sgemm(const GemmArgs& g) {
  if (g.ep && g.ep->sink && !sink_alone(*g.ep))
    throw std::invalid_argument("sgemm: a tile sink needs an epilogue with nothing else set");
  if ((g.dz_a || g.dz_b) && ((g.ep && !g.ep->sink) || (g.dz_a && g.csa != 1) ||
                             (g.dz_b && g.csb != 1) ||
                             (g.dz_a && g.dz_b && g.dz_a->act != g.dz_b->act)))
    throw std::invalid_argument(
        "sgemm: dz operands need unit column stride, no epilogue but a sink and one activation");
  switch (path_of(g)) {
    case Path::amx: amx::sgemm(g); return;
    case Path::avx512_bf16: avx512_bf16::sgemm(g); return;
    case Path::avx512: FASTDL_X86_ONLY(avx512::sgemm(g); return;)
    case Path::avx2: FASTDL_X86_ONLY(avx2::sgemm(g); return;)
    case Path::generic: break;
  }
  generic::sgemm(g);
}

GemmBPart sgemm_b_part(const GemmArgs& g, int t) {
  switch (path_of(g)) {
    case Path::amx: return amx::sgemm_b_part(g, t);
    case Path::avx512_bf16: return avx512_bf16::sgemm_b_part(g, t);
    case Path::avx512: FASTDL_X86_ONLY(return avx512::sgemm_b_part(g, t);)
    case Path::avx2: FASTDL_X86_ONLY(return avx2::sgemm_b_part(g, t);)
    case Path::generic: break;
  }
  return generic::sgemm_b_part(g, t);
}

void round_to_bf16_on_path(float* dst, const float* src, long n) {
  switch (active_bf16_unit()) {
    case Bf16Unit::amx: amx::round_to_bf16(dst, src, n); return;
    case Bf16Unit::avx512_bf16: avx512_bf16::round_to_bf16(dst, src, n); return;
    case Bf16Unit::none: break;
  }
  switch (active_isa()) {
    case Isa::avx512: avx512::round_to_bf16(dst, src, n); return;
    case Isa::avx2: avx2::round_to_bf16(dst, src, n); return;
    case Isa::generic: break;
  }
  generic::round_to_bf16(dst, src, n);
}

void sgemm(long m, long n, long k, const float* A, long rsa, long csa, const float* B,
           long rsb, long csb, float* C, long ldc, bool accumulate, const GemmEpilogue* ep,
           Precision precision) {
  GemmArgs g{m, n, k, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, ep};
  g.precision = precision;
  sgemm(g);
}

}  // namespace fastdl
