// Whether this build compiled the x86 kernel paths. Every file that names an x86-only
// namespace (fastdl::avx512, fastdl::avx2, ...), intrinsic or system call outside its own
// *_<isa>.cpp translation unit includes this header and guards that code with it.
//
// FASTDL_HAVE_X86 is 1 when CMake's FASTDL_X86_KERNELS is on (the default on x86-64 with a
// compiler that accepts -mavx512f...): the *_avx512.cpp / *_avx2.cpp files are compiled and
// linked. It is 0 otherwise (ARM, other targets, or FASTDL_X86_KERNELS=OFF): those files
// are not compiled, only *_generic.cpp is, and cpu_supports() answers false for every x86
// path, so active_isa() never picks one.
#pragma once

#if defined(FASTDL_X86_KERNELS) && FASTDL_X86_KERNELS
#if !defined(__x86_64__) && !defined(_M_X64)
#error "FASTDL_X86_KERNELS is on but the target is not x86-64: configure with -DFASTDL_X86_KERNELS=OFF"
#endif
#define FASTDL_HAVE_X86 1
#else
#define FASTDL_HAVE_X86 0
#endif

// A dispatcher's call into an x86 path: the statement itself when the x86 paths are
// built, nothing otherwise. Its case label then falls through to the next one and, last,
// to the generic path (which active_isa() returns anyway in such a build):
//   case Isa::avx512: FASTDL_X86_ONLY(avx512::sgemm(g); return;)
//   case Isa::avx2: FASTDL_X86_ONLY(avx2::sgemm(g); return;)
//   case Isa::generic: break;
#if FASTDL_HAVE_X86
#define FASTDL_X86_ONLY(...) __VA_ARGS__
#else
#define FASTDL_X86_ONLY(...)
#endif
