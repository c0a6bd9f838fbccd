#include "fastdl/precision.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace fastdl {

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

Precision parse_precision(const char* name) {
  for (Precision p : {Precision::fp32, Precision::bf16})
    if (std::strcmp(name, precision_name(p)) == 0) return p;
  throw std::invalid_argument(std::string("precision: expected 'fp32' or 'bf16', got '") + name +
                              "'");
}

}  // namespace fastdl
