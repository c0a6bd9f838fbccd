#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fastdl/runtime.h"
#include "runtime/x86_paths.h"

namespace fastdl {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::generic: break;
  }
  return "generic";
}

Isa parse_isa(const char* name) {
  for (Isa i : {Isa::avx512, Isa::avx2, Isa::generic})
    if (std::strcmp(name, isa_name(i)) == 0) return i;
  throw std::invalid_argument(std::string("isa: unknown name '") + name +
                              "'; expected one of avx512, avx2, generic");
}

bool cpu_supports(Isa isa) {
  // A path this build did not compile is as unsupported as one the CPU lacks.
#if FASTDL_HAVE_X86
  __builtin_cpu_init();
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::generic: return true;
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

static Isa detect() {
  if (const char* forced = std::getenv("FASTDL_ISA"); forced && *forced) {
    Isa isa;
    try {
      isa = parse_isa(forced);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(std::string("FASTDL_ISA=") + forced +
                                  " is not a kernel path; expected avx512, avx2 or generic");
    }
    if (!cpu_supports(isa))
      throw std::invalid_argument(std::string("FASTDL_ISA=") + forced +
                                  " but this CPU (or this build of fastdl) does not support it");
    return isa;
  }
  if (cpu_supports(Isa::avx512)) return Isa::avx512;
  if (cpu_supports(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

static std::atomic<int> g_isa{-1};

Isa active_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(detect());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_isa(Isa isa) {
  if (!cpu_supports(isa))
    throw std::invalid_argument(std::string("isa: this CPU (or this build of fastdl) does not support '") +
                                isa_name(isa) + "'");
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace fastdl
