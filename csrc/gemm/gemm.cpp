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
}  // namespace

void sgemm(const GemmArgs& g) {
  if (g.ep && g.ep->sink && !sink_alone(*g.ep))
    throw std::invalid_argument("sgemm: a tile sink needs an epilogue with nothing else set");
  if ((g.dz_a || g.dz_b) && ((g.ep && !g.ep->sink) || (g.dz_a && g.csa != 1) ||
                             (g.dz_b && g.csb != 1) ||
                             (g.dz_a && g.dz_b && g.dz_a->act != g.dz_b->act)))
    throw std::invalid_argument(
        "sgemm: dz operands need unit column stride, no epilogue but a sink and one activation");
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(avx512::sgemm(g); return;)
    case Isa::avx2: FASTDL_X86_ONLY(avx2::sgemm(g); return;)
    case Isa::generic: break;
  }
  generic::sgemm(g);
}

GemmBPart sgemm_b_part(const GemmArgs& g, int t) {
  switch (active_isa()) {
    case Isa::avx512: FASTDL_X86_ONLY(return avx512::sgemm_b_part(g, t);)
    case Isa::avx2: FASTDL_X86_ONLY(return avx2::sgemm_b_part(g, t);)
    case Isa::generic: break;
  }
  return generic::sgemm_b_part(g, t);
}

void sgemm(long m, long n, long k, const float* A, long rsa, long csa, const float* B,
           long rsb, long csb, float* C, long ldc, bool accumulate, const GemmEpilogue* ep) {
  sgemm(GemmArgs{m, n, k, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, ep});
}

}  // namespace fastdl
