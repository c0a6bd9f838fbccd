// Softmax cross-entropy, MSE and binary cross-entropy, each fused with its gradient.
// Included inside namespace fastdl::<isa> after defining V.
//
// Softmax cross-entropy works one row at a time while the row sits in L1: a max sweep,
// then one sweep that writes e = exp(x - max) into dlogits and gathers every sum the
// loss needs, then a sweep that turns e into (softmax - q) / n in place. Each logit
// costs one exp. Rows are independent, so threads split rows and the per-row losses
// are summed by the caller in row order. A sample weight w scales the row's loss and the
// row's gradient factors (1 / n becomes w / n); multiplying by w = 1 is exact, so weights
// of one give the unweighted bits.

namespace {

alignas(64) constexpr float kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// Mask of lanes 0 .. n-1.
FASTDL_INLINE typename V::Mask first_lanes(int n) {
  return V::lt(V::load(kIota), V::set1((float)n));
}

FASTDL_INLINE float hmax(V v) {
  float t[V::width];
  v.store(t);
  float m = t[0];
  for (int i = 1; i < V::width; ++i) m = t[i] > m ? t[i] : m;
  return m;
}

// Runs body(i) for i in [0, n), on `threads` threads (no OpenMP region for one).
template <class Body>
FASTDL_INLINE void parallel_for(long n, int threads, Body body) {
  if (threads <= 1) {
    for (long i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long i = 0; i < n; ++i) body(i);
}

// kProbs: targets are probability rows (else integer labels). kSmooth: label_smoothing > 0.
// kWeighted: a.weight holds each row's sample weight.
template <bool kProbs, bool kSmooth, bool kWeighted>
void softmax_ce_row(const SoftmaxCeArgs& a, long i) {
  constexpr int W = V::width;
  const long c = a.c;
  const long cv = c - c % W;
  const int nt = (int)(c - cv);
  const float* x = a.logits + i * c;
  float* dl = a.dlogits + i * c;
  const float* q = kProbs ? a.probs + i * c : nullptr;
  const auto tail = first_lanes(nt);
  const V neg_inf = V::set1(-std::numeric_limits<float>::infinity());

  // 1. The row max.
  V m0 = neg_inf, m1 = neg_inf;
  long j = 0;
  for (; j + 2 * W <= cv; j += 2 * W) {
    m0 = V::max(m0, V::load(x + j));
    m1 = V::max(m1, V::load(x + j + W));
  }
  if (j < cv) m0 = V::max(m0, V::load(x + j));
  if (nt) m1 = V::max(m1, V::select(tail, V::load_n(x + cv, nt), neg_inf));
  const float mx = hmax(V::max(m0, m1));
  const V vmx = V::set1(mx);

  // 2. e = exp(-(max - x)) into dl. Sums: e; gap = max - x (>= 0, so the loss is a sum
  //    of non-negative terms and never cancels); q * gap and q for probability targets.
  V s = V::zero(), gap = V::zero(), qgap = V::zero(), qsum = V::zero();
  for (j = 0; j < cv; j += W) {
    const V g = vmx - V::load(x + j);
    const V e = simd::vexp(V::zero() - g);
    e.store(dl + j);
    s = s + e;
    if (kSmooth) gap = gap + g;
    if (kProbs) {
      const V qq = V::load(q + j);
      qgap = V::fma(qq, g, qgap);
      qsum = qsum + qq;
    }
  }
  if (nt) {
    const V g = V::select(tail, vmx - V::load_n(x + cv, nt), V::zero());
    const V e = V::select(tail, simd::vexp(V::zero() - g), V::zero());
    e.store_n(dl + cv, nt);
    s = s + e;
    if (kSmooth) gap = gap + g;
    if (kProbs) {
      const V qq = V::load_n(q + cv, nt);
      qgap = V::fma(qq, g, qgap);
      qsum = qsum + qq;
    }
  }

  // 3. Loss = log(sum e) * sum(q) + sum(q * gap), with q the smoothed target; the
  //    gradient's factors below carry w / n where the unweighted ones carry 1 / n.
  const double eps = a.smoothing, n = (double)a.n;
  const double w = kWeighted ? (double)a.weight[i] : 1.0;
  const double sum_e = V::reduce_add(s);
  const double log_s = std::log(sum_e);
  const double smooth_term = kSmooth ? eps / (double)c * V::reduce_add(gap) : 0.0;
  double loss, scale;
  long y = 0;
  if (kProbs) {
    const double q_total = (1.0 - eps) * V::reduce_add(qsum) + eps;
    loss = q_total * log_s + (1.0 - eps) * V::reduce_add(qgap) + smooth_term;
    scale = (kWeighted ? w * q_total : q_total) / (sum_e * n);
  } else {
    y = a.label_bytes == 4 ? (long)static_cast<const int32_t*>(a.labels)[i]
                           : (long)static_cast<const int64_t*>(a.labels)[i];
    loss = log_s + (1.0 - eps) * ((double)mx - (double)x[y]) + smooth_term;
    scale = w / (sum_e * n);
  }
  a.row_loss[i] = kWeighted ? w * loss : loss;

  // 4. dl = e * scale - w q / n, in place.
  const V vscale = V::set1((float)scale);
  const V vbase = V::set1((float)(-(w * eps) / ((double)c * n)));
  const V vq = V::set1((float)(-(w * (1.0 - eps)) / n));
  for (j = 0; j < cv; j += W) {
    V d = kProbs ? V::fma(V::load(q + j), vq, vbase) : vbase;
    V::fma(V::load(dl + j), vscale, d).store(dl + j);
  }
  if (nt) {
    V d = kProbs ? V::fma(V::load_n(q + cv, nt), vq, vbase) : vbase;
    V::fma(V::load_n(dl + cv, nt), vscale, d).store_n(dl + cv, nt);
  }
  if (!kProbs) dl[y] -= (float)((w * (1.0 - eps)) / n);
}

template <bool kProbs, bool kSmooth>
void softmax_ce_rows(const SoftmaxCeArgs& a) {
  const int threads = (double)a.n * a.c < 32768.0 ? 1 : get_num_threads();
  if (a.weight)
    parallel_for(a.n, threads, [&](long i) { softmax_ce_row<kProbs, kSmooth, true>(a, i); });
  else
    parallel_for(a.n, threads, [&](long i) { softmax_ce_row<kProbs, kSmooth, false>(a, i); });
}

// Elementwise losses: Op::step(x, t, &grad) returns each element's loss and sets grad to
// its derivative (before scaling). span_loss runs it over len elements, writes
// grad * vscale and returns the lanes' sums (a partial vector's unused lanes masked out).
template <class Op>
FASTDL_INLINE V span_loss(float* grad, const float* x, const float* t, long len, V vscale) {
  constexpr int W = V::width;
  V acc0 = V::zero(), acc1 = V::zero();
  long j = 0;
  for (; j + 2 * W <= len; j += 2 * W) {
    V g0, g1;
    acc0 = acc0 + Op::step(V::load(x + j), V::load(t + j), &g0);
    acc1 = acc1 + Op::step(V::load(x + j + W), V::load(t + j + W), &g1);
    (g0 * vscale).store(grad + j);
    (g1 * vscale).store(grad + j + W);
  }
  for (; j < len; j += W) {
    const int nv = len - j < W ? (int)(len - j) : W;
    V g;
    const V l = Op::step(V::load_n(x + j, nv), V::load_n(t + j, nv), &g);
    acc0 = acc0 + (nv == W ? l : V::select(first_lanes(nv), l, V::zero()));
    (g * vscale).store_n(grad + j, nv);
  }
  return acc0 + acc1;
}

template <class Op>
void elementwise_chunks(const ElementwiseArgs& a) {
  const long nchunks = (a.size + kLossChunk - 1) / kLossChunk;
  const int threads = a.size < 65536 ? 1 : get_num_threads();
  const V vscale = V::set1((float)a.scale);
  parallel_for(nchunks, threads, [&](long k) {
    const long j0 = k * kLossChunk;
    const long j1 = a.size - j0 < kLossChunk ? a.size : j0 + kLossChunk;
    a.partial[k] = V::reduce_add(span_loss<Op>(a.grad + j0, a.x + j0, a.t + j0, j1 - j0, vscale));
  });
}

// The weighted form, over rows i0..i1 of c elements, returning sum_i w_i * (row i's sum
// of losses). Rows of at least a vector: one row at a time, its sum times its weight
// added in double, its gradient scaled by (float)(w * scale).
template <class Op>
FASTDL_INLINE double weighted_long_rows(const ElementwiseArgs& a, long i0, long i1) {
  const long c = a.c;
  double total = 0.0;
  for (long i = i0; i < i1; ++i) {
    const double w = (double)a.weight[i];
    const V vscale = V::set1((float)(w * a.scale));
    const long at = i * c;
    total += w * (double)V::reduce_add(span_loss<Op>(a.grad + at, a.x + at, a.t + at, c, vscale));
  }
  return total;
}

// Shorter rows: a vector spans several samples, so the elements run flat (no lanes
// wasted on padding) with each lane's weight from an array of per-element weights (the
// weights themselves for c = 1): loss += l * w, gradient scaled by w * (float)scale.
// Both forms scale a weight of one's gradient by exactly (float)scale.
template <class Op>
FASTDL_INLINE double weighted_short_rows(const ElementwiseArgs& a, long i0, long i1) {
  constexpr int W = V::width;
  // rows per chunk * c <= kLossChunk, plus the last row's vector store running over
  alignas(64) float lane_weight[kLossChunk + W];
  const long c = a.c, e0 = i0 * c, len = (i1 - i0) * c;
  const float* lw = a.weight + i0;
  if (c != 1) {
    // One vector store per row: each overwrites what the previous one ran over, so row
    // i's c elements end up holding its weight.
    for (long i = i0; i < i1; ++i) V::set1(a.weight[i]).store(lane_weight + (i - i0) * c);
    lw = lane_weight;
  }
  const float *x = a.x + e0, *t = a.t + e0;
  float* grad = a.grad + e0;
  const V vscale = V::set1((float)a.scale);
  V acc0 = V::zero(), acc1 = V::zero();
  long j = 0;
  for (; j + 2 * W <= len; j += 2 * W) {
    V g0, g1;
    const V w0 = V::load(lw + j), w1 = V::load(lw + j + W);
    acc0 = V::fma(Op::step(V::load(x + j), V::load(t + j), &g0), w0, acc0);
    acc1 = V::fma(Op::step(V::load(x + j + W), V::load(t + j + W), &g1), w1, acc1);
    (g0 * (w0 * vscale)).store(grad + j);
    (g1 * (w1 * vscale)).store(grad + j + W);
  }
  for (; j < len; j += W) {
    const int nv = len - j < W ? (int)(len - j) : W;
    V g;
    const V wv = V::load_n(lw + j, nv);
    const V l = Op::step(V::load_n(x + j, nv), V::load_n(t + j, nv), &g);
    acc0 = V::fma(nv == W ? l : V::select(first_lanes(nv), l, V::zero()), wv, acc0);
    (g * (wv * vscale)).store_n(grad + j, nv);
  }
  return (double)V::reduce_add(acc0 + acc1);
}

// Chunks of weighted_chunk_rows(c) rows, independent of the thread count.
template <class Op>
void weighted_row_chunks(const ElementwiseArgs& a) {
  const long c = a.c, n = a.size / c;
  const long rows = weighted_chunk_rows(c);
  const long nchunks = (n + rows - 1) / rows;
  const int threads = a.size < 65536 ? 1 : get_num_threads();
  parallel_for(nchunks, threads, [&](long k) {
    const long i0 = k * rows;
    const long i1 = n - i0 < rows ? n : i0 + rows;
    a.partial[k] = c < V::width ? weighted_short_rows<Op>(a, i0, i1) : weighted_long_rows<Op>(a, i0, i1);
  });
}

struct MseOp {
  static FASTDL_INLINE V step(V x, V t, V* grad) {
    const V d = x - t;
    *grad = d;
    return d * d;
  }
};

struct BceOp {
  // max(x, 0) - x t + log1p(e) with e = exp(-|x|); sigmoid(x) = 1 / (1 + e) for x >= 0
  // and e / (1 + e) below, so neither side overflows.
  static FASTDL_INLINE V step(V x, V t, V* grad) {
    const V e = simd::vexp(V::zero() - V::abs(x));
    const V r = V::set1(1.0f) / (V::set1(1.0f) + e);
    const V sig = V::select(V::lt(x, V::zero()), e * r, r);
    *grad = sig - t;
    return V::max(x, V::zero()) - x * t + simd::vlog1p(e);
  }
};

}  // namespace

void softmax_ce(const SoftmaxCeArgs& a) {
  const bool smooth = a.smoothing != 0.0f;
  if (a.probs) {
    smooth ? softmax_ce_rows<true, true>(a) : softmax_ce_rows<true, false>(a);
  } else {
    smooth ? softmax_ce_rows<false, true>(a) : softmax_ce_rows<false, false>(a);
  }
}

void mse(const ElementwiseArgs& a) {
  a.weight ? weighted_row_chunks<MseOp>(a) : elementwise_chunks<MseOp>(a);
}
void bce(const ElementwiseArgs& a) {
  a.weight ? weighted_row_chunks<BceOp>(a) : elementwise_chunks<BceOp>(a);
}
