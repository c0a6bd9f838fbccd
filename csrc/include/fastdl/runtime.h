// Instruction-set dispatch and threading.
#pragma once

namespace fastdl {

// The vector path the fp32 kernels run: each has one variant per Isa.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };
// The unit the bf16 GEMMs (Precision::bf16) run on, beside avx512: VDPBF16PS or the AMX
// tile unit. none: the portable path, bf16 operands multiplied on the vector path's fp32
// units.
enum class Bf16Unit : int { none = 0, avx512_bf16 = 1, amx = 2 };
// A kernel path, as FASTDL_ISA and fastdl.set_isa name it, each a superset of the next:
// "amx" (avx512 + AMX), "avx512_bf16" (avx512 + VDPBF16PS), "avx512", "avx2", "generic".
struct KernelPath {
  Isa isa;
  Bf16Unit bf16 = Bf16Unit::none;
};

const char* isa_name(Isa isa);  // "avx512", "avx2", "generic"
// Throws std::invalid_argument for a name that is not a vector path.
Isa parse_isa(const char* name);
const char* path_name(KernelPath path);
// Throws std::invalid_argument for an unknown name.
KernelPath parse_path(const char* name);
// True when this CPU (and OS) can run the path, and this build compiled it. For amx that
// includes the kernel's permission to use the tile data (Linux: arch_prctl
// ARCH_REQ_XCOMP_PERM), requested once, on the first question.
bool cpu_supports(KernelPath path);
bool cpu_supports(Isa isa);
// The selected path: the best supported one, or the one forced by the environment variable
// FASTDL_ISA (read once). An unknown or unsupported FASTDL_ISA throws std::invalid_argument.
KernelPath selected_path();
Isa active_isa();             // selected_path().isa
Bf16Unit active_bf16_unit();  // selected_path().bf16
// Forces a path for this process; throws std::invalid_argument if unsupported.
void set_path(KernelPath path);
void set_isa(Isa isa);  // set_path({isa}): no bf16 unit

// OpenMP threads used by every kernel. Default: the number of cores.
// The cap on n: kThreadCapPerProcessor threads per processor OpenMP reports, at least
// kMinThreadCap (beyond it, OpenMP's thread creation fails inside a kernel and ends the
// process instead of raising).
constexpr int kThreadCapPerProcessor = 4;
constexpr int kMinThreadCap = 64;
int max_num_threads();
void set_num_threads(int n);  // throws std::invalid_argument for n < 1 or n > max_num_threads()
int get_num_threads();
// Forking is safe (pthread_atfork handlers): before each fork the forking thread
// releases its OpenMP workers, which do not survive a fork, and parent and child start
// new ones when next needed. Where the runtime cannot release them (a fork from inside
// a parallel region), the child runs every kernel on one thread.

}  // namespace fastdl
