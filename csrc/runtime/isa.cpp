#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "fastdl/runtime.h"
#include "runtime/x86_paths.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fastdl {

namespace {
// Every path, best first; a path's index in kPaths is what g_path holds.
constexpr KernelPath kPaths[] = {{Isa::avx512, Bf16Unit::amx},
                                 {Isa::avx512, Bf16Unit::avx512_bf16},
                                 {Isa::avx512, Bf16Unit::none},
                                 {Isa::avx2, Bf16Unit::none},
                                 {Isa::generic, Bf16Unit::none}};
constexpr int kNumPaths = sizeof(kPaths) / sizeof(kPaths[0]);
constexpr const char* kPathNames = "amx, avx512_bf16, avx512, avx2, generic";

int index_of(KernelPath p) {
  for (int i = 0; i < kNumPaths; ++i)
    if (kPaths[i].isa == p.isa && kPaths[i].bf16 == p.bf16) return i;
  throw std::invalid_argument("isa: no kernel path pairs " + std::string(isa_name(p.isa)) +
                              " with that bf16 unit");
}

#if defined(__x86_64__) || defined(__i386__)
// CPUID leaf 7 (structured extended features), sub-leaf `sub`.
struct Leaf7 {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};
Leaf7 cpuid7(unsigned sub) {
  Leaf7 r;
  if (__get_cpuid_max(0, nullptr) < 7) return r;
  __cpuid_count(7, sub, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

[[maybe_unused]] bool avx512_bf16_units() {
  return (cpuid7(1).eax >> 5) & 1;  // AVX512_BF16
}

// AMX-TILE and AMX-BF16, with the OS saving the tile state (XCR0 bits 17 and 18).
[[maybe_unused]] bool amx_units() {
  const Leaf7 l = cpuid7(0);
  if (!((l.edx >> 24) & 1) || !((l.edx >> 22) & 1)) return false;
  unsigned a, b, c, d;
  __cpuid(1, a, b, c, d);
  if (!((c >> 27) & 1)) return false;  // OSXSAVE: xgetbv is available
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const unsigned tile_state = (1u << 17) | (1u << 18);
  return (lo & tile_state) == tile_state;
}

// Linux hands out the tile data (8 KiB of state per thread) only to a process that asks:
// until then the first tile instruction faults. Asked once; a refusal (an old kernel, a
// sigaltstack too small for the larger signal frame) leaves amx unsupported, and the bf16
// GEMM runs on avx512_bf16 instead.
[[maybe_unused]] bool tile_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  static const bool granted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
#else
  return false;
#endif
}
#endif

bool supports_bf16_unit(Bf16Unit unit) {
  switch (unit) {
    case Bf16Unit::none: return true;
    case Bf16Unit::avx512_bf16:
#if defined(FASTDL_HAVE_AVX512_BF16) && (defined(__x86_64__) || defined(__i386__))
      return avx512_bf16_units();
#else
      return false;
#endif
    case Bf16Unit::amx:
#if defined(FASTDL_HAVE_AMX) && (defined(__x86_64__) || defined(__i386__))
      // The AMX path packs with the AVX512-BF16 conversions.
      return avx512_bf16_units() && amx_units() && tile_permission();
#else
      return false;
#endif
  }
  return false;
}
}  // namespace

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

const char* path_name(KernelPath path) {
  switch (path.bf16) {
    case Bf16Unit::amx: return "amx";
    case Bf16Unit::avx512_bf16: return "avx512_bf16";
    case Bf16Unit::none: break;
  }
  return isa_name(path.isa);
}

KernelPath parse_path(const char* name) {
  for (const KernelPath& p : kPaths)
    if (std::strcmp(name, path_name(p)) == 0) return p;
  throw std::invalid_argument(std::string("isa: unknown name '") + name + "'; expected one of " +
                              kPathNames);
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

bool cpu_supports(KernelPath path) {
  return cpu_supports(path.isa) && supports_bf16_unit(path.bf16);
}

static KernelPath detect() {
  if (const char* forced = std::getenv("FASTDL_ISA"); forced && *forced) {
    KernelPath path;
    try {
      path = parse_path(forced);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(std::string("FASTDL_ISA=") + forced +
                                  " is not a kernel path; expected one of " + kPathNames);
    }
    if (!cpu_supports(path))
      throw std::invalid_argument(std::string("FASTDL_ISA=") + forced +
                                  " but this CPU (or this build of fastdl) does not support it");
    return path;
  }
  for (const KernelPath& p : kPaths)
    if (cpu_supports(p)) return p;
  return {Isa::generic};
}

static std::atomic<int> g_path{-1};

KernelPath selected_path() {
  int v = g_path.load(std::memory_order_relaxed);
  if (v < 0) {
    v = index_of(detect());
    g_path.store(v, std::memory_order_relaxed);
  }
  return kPaths[v];
}

Isa active_isa() { return selected_path().isa; }
Bf16Unit active_bf16_unit() { return selected_path().bf16; }

void set_path(KernelPath path) {
  const int i = index_of(path);
  if (!cpu_supports(path))
    throw std::invalid_argument(std::string("isa: this CPU (or this build of fastdl) does not support '") + path_name(path) +
                                "'");
  g_path.store(i, std::memory_order_relaxed);
}

void set_isa(Isa isa) { set_path({isa}); }

}  // namespace fastdl
