// Vectorised float transcendental functions written once over a vector type V
// (VecAvx512, VecAvx2, VecGeneric). Every ISA path runs the same polynomial, so the
// three paths agree to rounding (FMA contraction aside) and are tested against a
// float64 reference. Polynomials are Cephes' single-precision ones (about 1 ulp).
//
// NaN propagates: clamps are written max(lo, x) / min(hi, x) because x86 max/min
// return the second operand when either is NaN (VecGeneric copies that rule).
#pragma once
#include "simd/inline.h"

namespace fastdl::simd {

template <class V>
FASTDL_INLINE V vexp(V x) {
  // Clamp so the result is always finite: exp(88) = 1.65e38 < FLT_MAX.
  x = V::min(V::set1(88.0f), V::max(V::set1(-87.3f), x));
  V fx = V::round(x * V::set1(1.44269504088896341f));
  x = V::fma(fx, V::set1(-0.693359375f), x);
  x = V::fma(fx, V::set1(2.12194440e-4f), x);
  V z = x * x;
  V y = V::set1(1.9875691500e-4f);
  y = V::fma(y, x, V::set1(1.3981999507e-3f));
  y = V::fma(y, x, V::set1(8.3334519073e-3f));
  y = V::fma(y, x, V::set1(4.1665795894e-2f));
  y = V::fma(y, x, V::set1(1.6666665459e-1f));
  y = V::fma(y, x, V::set1(5.0000001201e-1f));
  y = V::fma(y, z, x + V::set1(1.0f));
  return y * V::pow2i(fx);
}

// log(x) for finite x > 0.
template <class V>
FASTDL_INLINE V vlog(V x) {
  V e;
  V m = V::frexp(x, &e);
  auto small = V::lt(m, V::set1(0.707106781186547524f));
  e = V::select(small, e - V::set1(1.0f), e);
  m = V::select(small, m + m, m) - V::set1(1.0f);
  V z = m * m;
  V y = V::set1(7.0376836292e-2f);
  y = V::fma(y, m, V::set1(-1.1514610310e-1f));
  y = V::fma(y, m, V::set1(1.1676998740e-1f));
  y = V::fma(y, m, V::set1(-1.2420140846e-1f));
  y = V::fma(y, m, V::set1(1.4249322787e-1f));
  y = V::fma(y, m, V::set1(-1.6668057665e-1f));
  y = V::fma(y, m, V::set1(2.0000714765e-1f));
  y = V::fma(y, m, V::set1(-2.4999993993e-1f));
  y = V::fma(y, m, V::set1(3.3333331174e-1f));
  y = y * m * z;
  y = V::fma(e, V::set1(-2.12194440e-4f), y);
  y = V::fma(z, V::set1(-0.5f), y);
  return V::fma(e, V::set1(0.693359375f), m + y);
}

// log(1 + u) for u >= 0, accurate for tiny u (Goldberg's correction).
template <class V>
FASTDL_INLINE V vlog1p(V u) {
  V w = V::set1(1.0f) + u;
  V r = vlog(w) * (u / (w - V::set1(1.0f)));
  return V::select(V::eq(w, V::set1(1.0f)), u, r);
}

template <class V>
FASTDL_INLINE V vsigmoid(V x) {
  return V::set1(1.0f) / (V::set1(1.0f) + vexp(V::set1(0.0f) - x));
}

template <class V>
FASTDL_INLINE V vtanh(V x) {
  V ax = V::abs(x);
  // |x| < 0.625: odd polynomial (no cancellation near 0).
  V z = x * x;
  V p = V::set1(-5.70498872745e-3f);
  p = V::fma(p, z, V::set1(2.06390887954e-2f));
  p = V::fma(p, z, V::set1(-5.37397155531e-2f));
  p = V::fma(p, z, V::set1(1.33314422036e-1f));
  p = V::fma(p, z, V::set1(-3.33332819422e-1f));
  V small = V::fma(p * z, x, x);
  // otherwise 1 - 2 / (exp(2|x|) + 1), with the sign of x.
  V big = V::set1(1.0f) - V::set1(2.0f) / (vexp(ax + ax) + V::set1(1.0f));
  big = V::select(V::lt(x, V::zero()), V::zero() - big, big);
  return V::select(V::lt(ax, V::set1(0.625f)), small, big);
}

// erfc(x) with fractional error below 1.2e-7 everywhere (Numerical Recipes' erfcc).
template <class V>
FASTDL_INLINE V verfc(V x) {
  V z = V::abs(x);
  V t = V::set1(1.0f) / V::fma(V::set1(0.5f), z, V::set1(1.0f));
  V p = V::set1(0.17087277f);
  p = V::fma(p, t, V::set1(-0.82215223f));
  p = V::fma(p, t, V::set1(1.48851587f));
  p = V::fma(p, t, V::set1(-1.13520398f));
  p = V::fma(p, t, V::set1(0.27886807f));
  p = V::fma(p, t, V::set1(-0.18628806f));
  p = V::fma(p, t, V::set1(0.09678418f));
  p = V::fma(p, t, V::set1(0.37409196f));
  p = V::fma(p, t, V::set1(1.00002368f));
  p = V::fma(p, t, V::set1(-1.26551223f));
  V r = t * vexp(p - z * z);
  return V::select(V::lt(x, V::zero()), V::set1(2.0f) - r, r);
}

}  // namespace fastdl::simd
