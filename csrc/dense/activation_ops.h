// Each activation as a pair of vector functions, written once over V:
//   f(z, alpha)   the forward value
//   df(s, alpha)  the derivative f'(z), where s is z for activations with
//                 activation_needs_z(a) and y = f(z) for the others.
// alpha is the scalar alpha broadcast (leaky_relu, elu) or the per-column alpha
// (prelu); the other activations ignore it.
#pragma once
#include "fastdl/activation.h"
#include "simd/vmath.h"

namespace fastdl::ops {

using simd::verfc;
using simd::vexp;
using simd::vlog1p;
using simd::vsigmoid;
using simd::vtanh;

template <Activation A> struct Act;

template <> struct Act<Activation::linear> {
  template <class V> static FASTDL_INLINE V f(V z, V) { return z; }
  template <class V> static FASTDL_INLINE V df(V, V) { return V::set1(1.f); }
};
template <> struct Act<Activation::sigmoid> {
  template <class V> static FASTDL_INLINE V f(V z, V) { return vsigmoid(z); }
  template <class V> static FASTDL_INLINE V df(V y, V) { return y * (V::set1(1.f) - y); }
};
template <> struct Act<Activation::tanh> {
  template <class V> static FASTDL_INLINE V f(V z, V) { return vtanh(z); }
  template <class V> static FASTDL_INLINE V df(V y, V) { return V::set1(1.f) - y * y; }
};
template <> struct Act<Activation::relu> {
  template <class V> static FASTDL_INLINE V f(V z, V) { return V::max(V::zero(), z); }
  template <class V> static FASTDL_INLINE V df(V y, V) {
    return V::select(V::gt(y, V::zero()), V::set1(1.f), V::zero());
  }
};
template <> struct Act<Activation::leaky_relu> {
  template <class V> static FASTDL_INLINE V f(V z, V a) { return V::select(V::gt(z, V::zero()), z, a * z); }
  template <class V> static FASTDL_INLINE V df(V y, V a) { return V::select(V::gt(y, V::zero()), V::set1(1.f), a); }
};
template <> struct Act<Activation::prelu> {  // same as leaky, but from z (alpha may be any sign)
  template <class V> static FASTDL_INLINE V f(V z, V a) { return V::select(V::gt(z, V::zero()), z, a * z); }
  template <class V> static FASTDL_INLINE V df(V z, V a) { return V::select(V::gt(z, V::zero()), V::set1(1.f), a); }
};
template <> struct Act<Activation::elu> {
  template <class V> static FASTDL_INLINE V f(V z, V a) {
    return V::select(V::gt(z, V::zero()), z, a * (vexp(z) - V::set1(1.f)));
  }
  // For z <= 0, f'(z) = alpha * exp(z) = y + alpha.
  template <class V> static FASTDL_INLINE V df(V y, V a) { return V::select(V::gt(y, V::zero()), V::set1(1.f), y + a); }
};
template <> struct Act<Activation::silu> {
  template <class V> static FASTDL_INLINE V f(V z, V) { return z * vsigmoid(z); }
  template <class V> static FASTDL_INLINE V df(V z, V) {
    V s = vsigmoid(z);
    return s * V::fma(z, V::set1(1.f) - s, V::set1(1.f));
  }
};
template <> struct Act<Activation::softplus> {
  // max(z, 0) + log1p(exp(-|z|)); linear above 20 like PyTorch's threshold.
  template <class V> static FASTDL_INLINE V f(V z, V) {
    V r = V::max(V::zero(), z) + vlog1p(vexp(V::zero() - V::abs(z)));
    return V::select(V::gt(z, V::set1(20.f)), z, r);
  }
  // f'(z) = sigmoid(z) = 1 - exp(-y).
  template <class V> static FASTDL_INLINE V df(V y, V) {
    return V::select(V::gt(y, V::set1(20.f)), V::set1(1.f), V::set1(1.f) - vexp(V::zero() - y));
  }
};
template <> struct Act<Activation::hard_tanh> {
  template <class V> static FASTDL_INLINE V f(V z, V) { return V::min(V::set1(1.f), V::max(V::set1(-1.f), z)); }
  template <class V> static FASTDL_INLINE V df(V y, V) {
    auto inside = V::lt(V::abs(y), V::set1(1.f));
    return V::select(inside, V::set1(1.f), V::zero());
  }
};
template <> struct Act<Activation::gelu> {
  template <class V> static FASTDL_INLINE V f(V z, V) {
    return V::set1(0.5f) * z * verfc(z * V::set1(-0.70710678118654752f));
  }
  // Phi(z) + z * phi(z)
  template <class V> static FASTDL_INLINE V df(V z, V) {
    V cdf = V::set1(0.5f) * verfc(z * V::set1(-0.70710678118654752f));
    V pdf = V::set1(0.39894228040143268f) * vexp(z * z * V::set1(-0.5f));
    return V::fma(z, pdf, cdf);
  }
};

// Calls fn(Act<A>{}) for the runtime activation a: one switch outside the hot loops.
template <class Fn>
FASTDL_INLINE auto dispatch_activation(Activation a, Fn&& fn) {
  switch (a) {
    case Activation::sigmoid: return fn(Act<Activation::sigmoid>{});
    case Activation::tanh: return fn(Act<Activation::tanh>{});
    case Activation::relu: return fn(Act<Activation::relu>{});
    case Activation::leaky_relu: return fn(Act<Activation::leaky_relu>{});
    case Activation::prelu: return fn(Act<Activation::prelu>{});
    case Activation::elu: return fn(Act<Activation::elu>{});
    case Activation::silu: return fn(Act<Activation::silu>{});
    case Activation::softplus: return fn(Act<Activation::softplus>{});
    case Activation::hard_tanh: return fn(Act<Activation::hard_tanh>{});
    case Activation::gelu: return fn(Act<Activation::gelu>{});
    case Activation::linear: break;
  }
  return fn(Act<Activation::linear>{});
}

}  // namespace fastdl::ops
