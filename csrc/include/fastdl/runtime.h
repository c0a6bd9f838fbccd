// Instruction-set dispatch and threading.
#pragma once

namespace fastdl {

// The kernel paths compiled into the library. Each kernel has one variant per Isa and
// the active one is chosen at run time from what the CPU reports.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name ("avx512", "avx2", "generic").
Isa parse_isa(const char* name);
// True when this CPU (and OS) can run the path.
bool cpu_supports(Isa isa);
// Best supported path, or the one forced by the environment variable FASTDL_ISA
// (read once). An unknown or unsupported FASTDL_ISA throws std::invalid_argument.
Isa active_isa();
// Forces a path for this process; throws std::invalid_argument if unsupported.
void set_isa(Isa isa);

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
