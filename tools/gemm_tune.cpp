// GEMM tuning harness: times fastdl::sgemm (GFLOP/s, median of 7) at the dense layer's
// shapes -- forward x @ w, dw = x^T @ dz (A transposed), dx = dz @ w^T (B transposed).
// Build it against the static kernel library with the cache-block knobs you want to
// try, e.g. (after tools/dev-build.sh):
//   g++ -O3 -std=gnu++17 -fopenmp -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 \
//     -mfma -mf16c -Icsrc -Icsrc/include -DFASTDL_AVX512_KC=384 -c csrc/gemm/gemm_avx512.cpp \
//     -o /tmp/g.o
//   g++ -O2 -std=gnu++17 -fopenmp -Icsrc/include tools/gemm_tune.cpp /tmp/g.o \
//     build/dev/libfastdl_kernels.a -o /tmp/gemm_tune && /tmp/gemm_tune 2
// (the object given first replaces the library's gemm_avx512.o). Compare builds in one
// sitting, alternating them: these machines are shared and noisy.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fastdl/gemm.h"
#include "fastdl/runtime.h"

struct Shape {
  long m, k, n;
  bool trans_a, trans_b;
  const char* what;
};

static double gflops(const Shape& s) {
  std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
  for (auto& x : a) x = (float)rand() / RAND_MAX - 0.5f;
  for (auto& x : b) x = (float)rand() / RAND_MAX - 0.5f;
  // A transposed: A is stored k x m; B transposed: B is stored n x k.
  const long rsa = s.trans_a ? 1 : s.k, csa = s.trans_a ? s.m : 1;
  const long rsb = s.trans_b ? 1 : s.n, csb = s.trans_b ? s.k : 1;
  auto run = [&] {
    fastdl::sgemm(s.m, s.n, s.k, a.data(), rsa, csa, b.data(), rsb, csb, c.data(), s.n);
  };
  const double flop = 2.0 * s.m * s.n * s.k;
  const int reps = (int)(3e9 / flop) + 1;  // ~10 ms per sample at 300 GFLOP/s
  run();
  std::vector<double> t;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) run();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  std::sort(t.begin(), t.end());
  return flop / t[3] / 1e9;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (threads < 1) {
    fprintf(stderr, "usage: gemm_tune [threads >= 1]\n");
    return 2;
  }
  fastdl::set_num_threads(threads);
  const Shape shapes[] = {
      {2048, 2048, 2048, false, false, "plain"},   {128, 784, 1024, false, false, "forward"},
      {1024, 1024, 1024, false, false, "forward"}, {4096, 1024, 1024, false, false, "forward"},
      {784, 128, 1024, true, false, "dw"},         {1024, 1024, 1024, true, false, "dw"},
      {1024, 4096, 1024, true, false, "dw"},       {128, 1024, 784, false, true, "dx"},
      {1024, 1024, 1024, false, true, "dx"},       {4096, 1024, 1024, false, true, "dx"},
      {32, 784, 64, false, false, "small fwd"},    {784, 32, 64, true, false, "small dw"},
      {32, 64, 64, false, false, "small fwd"},     {64, 32, 64, true, false, "small dw"},
  };
  printf("isa %s, %d threads\n", fastdl::isa_name(fastdl::active_isa()), threads);
  for (const Shape& s : shapes)
    printf("%-9s m=%-5ld k=%-5ld n=%-5ld %7.1f GFLOP/s\n", s.what, s.m, s.k, s.n, gflops(s));
}
