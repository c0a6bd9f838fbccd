// The fused optimizer steps, written once over the vector type V and included inside
// namespace fastdl::optim::<isa>. One launcher walks the flat buffer; each optimizer is
// a small functor holding only its per-element math (apex's shape). A functor declares
// how many state buffers it streams (kState) and updates registers in place:
//   template <bool Decay> void operator()(V& p, V g, V (&s)[kState]) const;
// Decay is true inside the weight-decay spans. Everything is elementwise, so threads
// split the buffer into blocks freely and the result is thread-count independent.

constexpr long kBlock = 8192;             // elements per task: 32 KB per stream

// g + wd*theta + l1*sign(theta) inside the spans, g outside.
template <bool Decay>
FASTDL_INLINE V regularized(V g, V p, const Regularizer& r) {
  if constexpr (Decay) {
    if (r.wd != 0.0f) g = V::fma(V::set1(r.wd), p, g);
    if (r.l1 != 0.0f) {
      const V l1 = V::set1(r.l1), zero = V::zero();
      g = g + V::select(V::gt(p, zero), l1, V::select(V::lt(p, zero), zero - l1, zero));
    }
  }
  return g;
}

// ---------------------------------------------------------------- the functors

// SGD without a momentum buffer: theta -= lr*g.
struct SgdPlain {
  static constexpr int kState = 0;
  const SgdScalars& c;
  template <bool Decay>
  FASTDL_INLINE void operator()(V& p, V g, V (&)[1]) const {
    p = V::fma(V::set1(c.neg_lr), regularized<Decay>(g, p, c.reg), p);
  }
};

struct SgdMomentum {
  static constexpr int kState = 1;
  const SgdScalars& c;
  template <bool Decay>
  FASTDL_INLINE void operator()(V& p, V g, V (&s)[1]) const {
    g = regularized<Decay>(g, p, c.reg);
    V& b = s[0];
    const V mu = V::set1(c.mu);
    if (!c.classic) {  // PyTorch: b = mu*b + (1-dampening)*g; theta -= lr*(nesterov ? g + mu*b : b)
      b = c.first_step ? g : V::fma(V::set1(c.one_minus_damp), g, mu * b);
      const V d = c.nesterov ? V::fma(mu, b, g) : b;
      p = V::fma(V::set1(c.neg_lr), d, p);
    } else {  // lectures: v = mu*v - lr*(1-dampening)*g; theta += v (nesterov: mu*v - lr*g)
      b = c.first_step ? V::set1(c.neg_lr) * g : V::fma(V::set1(c.neg_lr_damped), g, mu * b);
      p = c.nesterov ? p + V::fma(mu, b, V::set1(c.neg_lr) * g) : p + b;
    }
  }
};

struct Adagrad {
  static constexpr int kState = 1;
  const AdagradScalars& c;
  template <bool Decay>
  FASTDL_INLINE void operator()(V& p, V g, V (&s)[1]) const {
    g = regularized<Decay>(g, p, c.reg);
    s[0] = V::fma(g, g, s[0]);
    p = p + V::set1(c.neg_clr) * g / (V::sqrt(s[0]) + V::set1(c.eps));
  }
};

// State order: square_avg, then momentum_buf when Momentum, then grad_avg when Centered.
template <bool Momentum, bool Centered>
struct Rmsprop {
  static constexpr int kState = 1 + Momentum + Centered;
  const RmspropScalars& c;
  template <bool Decay>
  FASTDL_INLINE void operator()(V& p, V g, V (&s)[kState]) const {
    g = regularized<Decay>(g, p, c.reg);
    const V oma = V::set1(c.one_minus_alpha);
    V& sq = s[0];
    sq = V::fma(oma * g, g, V::set1(c.alpha) * sq);
    V var = sq;
    if constexpr (Centered) {
      V& ga = s[kState - 1];
      ga = V::fma(oma, g - ga, ga);
      // max(0, v), not max(v, 0): x86 max returns its second operand when unordered, so
      // a NaN state reaches the parameters instead of becoming a variance of 0.
      var = V::max(V::zero(), V::fma(ga, V::zero() - ga, sq));
    }
    const V avg = V::sqrt(var) + V::set1(c.eps);
    if constexpr (Momentum) {
      V& buf = s[1];
      buf = V::fma(V::set1(c.mu), buf, g / avg);
      p = V::fma(V::set1(c.neg_lr), buf, p);
    } else {
      p = p + V::set1(c.neg_lr) * g / avg;
    }
  }
};

struct Adadelta {
  static constexpr int kState = 2;  // square_avg, acc_delta
  const AdadeltaScalars& c;
  template <bool Decay>
  FASTDL_INLINE void operator()(V& p, V g, V (&s)[2]) const {
    g = regularized<Decay>(g, p, c.reg);
    const V rho = V::set1(c.rho), omr = V::set1(c.one_minus_rho), eps = V::set1(c.eps);
    s[0] = V::fma(omr * g, g, rho * s[0]);
    const V delta = V::sqrt(s[1] + eps) / V::sqrt(s[0] + eps) * g;
    s[1] = V::fma(omr * delta, delta, rho * s[1]);
    p = V::fma(V::set1(c.neg_lr), delta, p);
  }
};

struct Adam {
  static constexpr int kState = 2;  // exp_avg, exp_avg_sq
  const AdamScalars& c;
  template <bool Decay>
  FASTDL_INLINE void operator()(V& p, V g, V (&s)[2]) const {
    g = regularized<Decay>(g, p, c.reg);
    if constexpr (Decay) p = p * V::set1(c.decay_factor);  // AdamW (1 for Adam)
    V& m = s[0];
    V& v = s[1];
    m = V::fma(V::set1(c.one_minus_beta1), g - m, m);
    v = V::fma(V::set1(c.one_minus_beta2) * g, g, V::set1(c.beta2) * v);
    const V denom = V::fma(V::sqrt(v), V::set1(c.inv_bc2_sqrt), V::set1(c.eps));
    p = p + V::set1(c.neg_step_size) * m / denom;
  }
};

// ---------------------------------------------------------------- the launcher

// Updates the r < V::width elements at i with partial loads and stores; g: their gradient.
template <bool Decay, class Op>
FASTDL_INLINE void run_partial(const Op& op, const Buffers& b, const float* g, long i, int r) {
  constexpr int NS = Op::kState;
  V s[NS > 0 ? NS : 1];
  V p = V::load_n(b.p + i, r);
  const V gv = V::load_n(g, r);
  for (int k = 0; k < NS; ++k) s[k] = V::load_n(b.s[k] + i, r);
  op.template operator()<Decay>(p, gv, s);
  p.store_n(b.p + i, r);
  for (int k = 0; k < NS; ++k) s[k].store_n(b.s[k] + i, r);
}

// Elements [i, end); g: the gradient of element i (and on).
template <bool Decay, class Op>
FASTDL_INLINE void run_range(const Op& op, const Buffers& b, const float* g, long i, long end) {
  constexpr int NS = Op::kState;
  // Peel up to the params' vector alignment: a full-width access that straddles two
  // cache lines costs a second one, and numpy gives 16-byte aligned arrays (buffers
  // from one allocator usually share that offset, so one peel aligns them all).
  constexpr unsigned long kAlign = sizeof(float) * V::width;
  const unsigned long mis = reinterpret_cast<unsigned long>(b.p + i) % kAlign;
  if (mis != 0 && mis % sizeof(float) == 0) {
    const long head = (long)((kAlign - mis) / sizeof(float));
    const int r = (int)(head < end - i ? head : end - i);
    run_partial<Decay>(op, b, g, i, r);
    i += r;
    g += r;
  }
  V s[NS > 0 ? NS : 1];
  for (; i + V::width <= end; i += V::width, g += V::width) {
    V p = V::load(b.p + i);
    const V gv = V::load(g);
    for (int k = 0; k < NS; ++k) s[k] = V::load(b.s[k] + i);
    op.template operator()<Decay>(p, gv, s);
    p.store(b.p + i);
    for (int k = 0; k < NS; ++k) s[k].store(b.s[k] + i);
  }
  if (i < end) run_partial<Decay>(op, b, g, i, (int)(end - i));
}

// Index of the first span ending after lo (spans are sorted and disjoint, so their ends
// are sorted too); d.count when none does.
static long first_span_after(Spans d, long lo) {
  long first = 0, last = d.count;
  while (first < last) {
    const long mid = (first + last) / 2;
    if (d.bounds[2 * mid + 1] <= lo) first = mid + 1; else last = mid;
  }
  return first;
}

// Runs op over [lo, hi), switching between the decayed and plain loops at span edges;
// g: the gradient of element lo.
template <class Op>
static void run_spans(const Op& op, const Buffers& b, Spans d, const float* g, long lo, long hi) {
  const long first = first_span_after(d, lo);
  long pos = lo;
  for (long k = first; k < d.count && d.bounds[2 * k] < hi; ++k) {
    const long a = d.bounds[2 * k] > lo ? d.bounds[2 * k] : lo;
    const long e = d.bounds[2 * k + 1] < hi ? d.bounds[2 * k + 1] : hi;
    if (a > pos) run_range<false>(op, b, g + (pos - lo), pos, a);
    run_range<true>(op, b, g + (a - lo), a, e);
    pos = e;
  }
  if (pos < hi) run_range<false>(op, b, g + (pos - lo), pos, hi);
}

// [begin, end) in blocks over the threads; g: the gradient of element begin.
template <class Op>
static void launch(const Op& op, const Buffers& b, Spans d, const float* g, long begin, long end) {
  const long n = end - begin, nblocks = (n + kBlock - 1) / kBlock;
  const int nthreads = n < kParallelMin ? 1 : get_num_threads();
#pragma omp parallel num_threads(nthreads)
  {
    // Decaying state goes subnormal where gradients stay 0: flush it (flush_denormals.h).
    FlushDenormals ftz;
#pragma omp for schedule(static)
    for (long blk = 0; blk < nblocks; ++blk) {
      const long lo = begin + blk * kBlock, hi = lo + kBlock < end ? lo + kBlock : end;
      run_spans(op, b, d, g + (lo - begin), lo, hi);
    }
  }
}

// ---------------------------------------------------------------- entry points

// Calls f with the functor of d's optimizer.
template <class F>
static void with_op(const StepDesc& d, F&& f) {
  switch (d.kind) {
    case Kind::sgd:
      if (d.sgd.has_buf) f(SgdMomentum{d.sgd});
      else f(SgdPlain{d.sgd});
      break;
    case Kind::adagrad: f(Adagrad{d.adagrad}); break;
    case Kind::rmsprop: {
      const RmspropScalars& c = d.rmsprop;
      if (c.momentum && c.centered) f(Rmsprop<true, true>{c});
      else if (c.momentum) f(Rmsprop<true, false>{c});
      else if (c.centered) f(Rmsprop<false, true>{c});
      else f(Rmsprop<false, false>{c});
      break;
    }
    case Kind::adadelta: f(Adadelta{d.adadelta}); break;
    case Kind::adam: f(Adam{d.adam}); break;
  }
}

void run(const StepDesc& d, const float* g, long begin, long end) {
  if (end <= begin) return;
  with_op(d, [&](const auto& op) { launch(op, d.b, d.spans(), g, begin, end); });
}

// Where [lo, hi) lies against the decay spans: 1 inside one span, 0 clear of all of
// them, -1 across an edge.
static int decay_of_range(Spans d, long lo, long hi) {
  const long first = first_span_after(d, lo);
  if (first == d.count || d.bounds[2 * first] >= hi) return 0;
  return d.bounds[2 * first] <= lo && d.bounds[2 * first + 1] >= hi ? 1 : -1;
}

void run_block(const StepDesc& d, const float* g, long ldg, long offset, long ld, long rows,
               long cols) {
  if (rows <= 0 || cols <= 0) return;
  FlushDenormals ftz;
  // A backward kernel calls this once per GEMM tile (a few rows of 32 floats): the span
  // search is done once for the block, not per row, unless a span edge crosses it.
  const int decay = decay_of_range(d.spans(), offset, offset + (rows - 1) * ld + cols);
  with_op(d, [&](const auto& op) {
    for (long r = 0; r < rows; ++r) {
      const long lo = offset + r * ld;
      if (decay == 1) run_range<true>(op, d.b, g + r * ldg, lo, lo + cols);
      else if (decay == 0) run_range<false>(op, d.b, g + r * ldg, lo, lo + cols);
      else run_spans(op, d.b, d.spans(), g + r * ldg, lo, lo + cols);
    }
  });
}
