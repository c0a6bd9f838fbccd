#include "fastdl/activation.h"

#include <stdexcept>

namespace fastdl {

static const char* const kNames[kNumActivations] = {
    "linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu",
    "elu",    "silu",    "softplus", "hard_tanh", "gelu"};

const char* activation_name(Activation a) { return kNames[static_cast<int>(a)]; }

std::string activation_names() {
  std::string s;
  for (int i = 0; i < kNumActivations; ++i) {
    if (i) s += ", ";
    s += kNames[i];
  }
  return s;
}

Activation parse_activation(const std::string& name) {
  for (int i = 0; i < kNumActivations; ++i)
    if (name == kNames[i]) return static_cast<Activation>(i);
  throw std::invalid_argument("activation: unknown name '" + name + "'; expected one of " +
                              activation_names());
}

}  // namespace fastdl
