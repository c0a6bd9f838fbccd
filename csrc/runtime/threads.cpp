#include <stdexcept>
#include <string>

#include "fastdl/runtime.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastdl {

void set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

int get_num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace fastdl
