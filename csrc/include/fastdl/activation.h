// Activation functions known to the fused kernels.
#pragma once
#include <string>

namespace fastdl {

enum class Activation : int {
  linear = 0,
  sigmoid,
  tanh,
  relu,
  leaky_relu,  // y = z > 0 ? z : alpha * z, alpha >= 0 (default 0.01)
  prelu,       // as leaky_relu with one learned alpha per output unit
  elu,         // y = z > 0 ? z : alpha * (exp(z) - 1), alpha >= 0 (default 1)
  silu,        // z * sigmoid(z)
  softplus,    // log(1 + exp(z)), linear above z = 20 (PyTorch's threshold)
  hard_tanh,   // clamp(z, -1, 1)
  gelu,        // exact: z * Phi(z) = 0.5 z erfc(-z / sqrt(2))
};

constexpr int kNumActivations = 11;

const char* activation_name(Activation a);
// Parses a name such as "relu"; throws std::invalid_argument listing the valid names.
Activation parse_activation(const std::string& name);
// "linear, sigmoid, ...": for error messages.
std::string activation_names();

// True where the backward pass needs the pre-activation z; the others work from y
// alone (y determines f'(z) for them given alpha >= 0).
constexpr bool activation_needs_z(Activation a) {
  return a == Activation::prelu || a == Activation::silu || a == Activation::gelu;
}

// What alpha means for an activation: none; one scalar for the layer (leaky_relu's
// slope, elu's scale); or one learned value per output unit (prelu's slopes).
enum class AlphaKind : int { none = 0, scalar, learned };

constexpr AlphaKind activation_alpha_kind(Activation a) {
  return a == Activation::leaky_relu || a == Activation::elu ? AlphaKind::scalar
         : a == Activation::prelu                           ? AlphaKind::learned
                                                            : AlphaKind::none;
}

// Default alpha for the activations that take a scalar one.
constexpr float activation_default_alpha(Activation a) {
  return a == Activation::elu ? 1.0f : 0.01f;
}

}  // namespace fastdl
