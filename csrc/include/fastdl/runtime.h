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
void set_num_threads(int n);  // throws std::invalid_argument for n < 1
int get_num_threads();

}  // namespace fastdl
