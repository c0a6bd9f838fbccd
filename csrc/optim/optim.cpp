// Dispatcher for the fused optimizer steps: validates the options (the same checks as
// torch.optim's constructors), normalises the decay ranges, folds the per-call scalars
// on the host (bias corrections once per call, not per element) and runs the ISA path.
#include "fastdl/optim.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastdl/runtime.h"
#include "optim/optim_isa.h"
#include "runtime/x86_paths.h"

namespace fastdl {

namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

[[noreturn]] void bad(const char* name, const std::string& rule, double got) {
  throw std::invalid_argument(std::string(name) + ": expected " + rule + ", got " + num(got));
}

void check_lr(float lr) {
  if (!(std::isfinite(lr) && lr > 0.0f)) bad("lr", "a finite number > 0", lr);
}
void check_nonneg(const char* name, float v) {
  if (!(std::isfinite(v) && v >= 0.0f)) bad(name, "a finite number >= 0", v);
}
void check_unit(const char* name, float v, bool closed) {  // [0, 1) or [0, 1]
  if (!(v >= 0.0f && (closed ? v <= 1.0f : v < 1.0f)))
    bad(name, closed ? "a number in [0, 1]" : "a number in [0, 1)", v);
}
void check_step(long step) {
  if (step < 1) bad("step", "the 1-based step count (>= 1)", (double)step);
}
void check_reg(float weight_decay, float l1) {
  check_nonneg("weight_decay", weight_decay);
  check_nonneg("l1", l1);
}

// The decay ranges as sorted, disjoint, non-empty spans (the whole buffer when none).
std::vector<long> normalise(DecayRanges d, long n) {
  std::vector<long> out;
  if (!d.ranges) {
    if (n > 0) out = {0, n};
    return out;
  }
  std::vector<std::pair<long, long>> r;
  r.reserve(d.count);
  for (long i = 0; i < d.count; ++i) {
    const int64_t a = d.ranges[2 * i], b = d.ranges[2 * i + 1];
    if (a < 0 || b > n || a > b)
      throw std::invalid_argument("decay_segments: row " + std::to_string(i) + " is [" +
                                  std::to_string(a) + ", " + std::to_string(b) +
                                  "); expected 0 <= start <= stop <= " + std::to_string(n) +
                                  " (the buffer length)");
    if (a < b) r.emplace_back((long)a, (long)b);
  }
  std::sort(r.begin(), r.end());
  for (auto [a, b] : r) {
    if (!out.empty() && a <= out.back()) {
      out.back() = std::max(out.back(), b);
    } else {
      out.push_back(a);
      out.push_back(b);
    }
  }
  return out;
}

std::shared_ptr<optim::StepDesc> new_desc(optim::Kind kind, float* params, long n,
                                          DecayRanges decay) {
  auto d = std::make_shared<optim::StepDesc>();
  d->kind = kind;
  d->b = {params, {nullptr, nullptr, nullptr}, n};
  d->bounds = normalise(decay, n);
  return d;
}

#define FASTDL_OPTIM_DISPATCH(fn, ...)                                        \
  switch (active_isa()) {                                                     \
    case Isa::avx512: FASTDL_X86_ONLY(optim::avx512::fn(__VA_ARGS__); break;) \
    case Isa::avx2: FASTDL_X86_ONLY(optim::avx2::fn(__VA_ARGS__); break;)     \
    case Isa::generic: optim::generic::fn(__VA_ARGS__); break;                \
  }

}  // namespace

void check_options(const SgdOptions& o) {
  check_lr(o.lr);
  check_nonneg("momentum", o.momentum);
  if (!std::isfinite(o.dampening)) bad("dampening", "a finite number", o.dampening);
  check_reg(o.weight_decay, o.l1);
  if (o.nesterov && (o.momentum <= 0.0f || o.dampening != 0.0f))
    throw std::invalid_argument("nesterov: needs momentum > 0 and dampening = 0 (as PyTorch), got momentum=" +
                                num(o.momentum) + ", dampening=" + num(o.dampening));
}

void check_options(const AdagradOptions& o) {
  check_lr(o.lr);
  check_step(o.step);
  check_nonneg("lr_decay", o.lr_decay);
  check_nonneg("eps", o.eps);
  check_reg(o.weight_decay, o.l1);
}

void check_options(const RmspropOptions& o) {
  check_lr(o.lr);
  check_nonneg("alpha", o.alpha);
  check_nonneg("eps", o.eps);
  check_nonneg("momentum", o.momentum);
  check_reg(o.weight_decay, o.l1);
}

void check_options(const AdadeltaOptions& o) {
  check_lr(o.lr);
  check_unit("rho", o.rho, /*closed=*/true);
  check_nonneg("eps", o.eps);
  check_reg(o.weight_decay, o.l1);
}

void check_options(const AdamOptions& o) {
  check_lr(o.lr);
  check_step(o.step);
  check_unit("beta1", o.beta1, /*closed=*/false);
  check_unit("beta2", o.beta2, /*closed=*/false);
  check_nonneg("eps", o.eps);
  check_reg(o.weight_decay, o.l1);
}

OptimizerStep OptimizerStep::sgd(float* params, float* momentum_buf, long n, const SgdOptions& o,
                                 DecayRanges decay) {
  check_options(o);
  const bool has_buf = o.momentum != 0.0f;
  if (has_buf && !momentum_buf)
    throw std::invalid_argument("momentum_buf: momentum=" + num(o.momentum) +
                                " needs a float32 buffer of the parameters' length");
  auto d = new_desc(optim::Kind::sgd, params, n, decay);
  optim::SgdScalars& c = d->sgd;
  c.reg = {o.weight_decay, o.l1};
  c.neg_lr = -o.lr;
  c.mu = o.momentum;
  c.one_minus_damp = 1.0f - o.dampening;
  c.neg_lr_damped = (float)(-(double)o.lr * (1.0 - (double)o.dampening));
  c.has_buf = has_buf;
  c.nesterov = o.nesterov;
  c.first_step = o.first_step;
  c.classic = o.classic;
  d->b.s[0] = momentum_buf;
  return OptimizerStep(std::move(d));
}

OptimizerStep OptimizerStep::adagrad(float* params, float* sum_sq, long n, const AdagradOptions& o,
                                     DecayRanges decay) {
  check_options(o);
  auto d = new_desc(optim::Kind::adagrad, params, n, decay);
  optim::AdagradScalars& c = d->adagrad;
  c.reg = {o.weight_decay, o.l1};
  c.neg_clr = (float)(-(double)o.lr / (1.0 + (double)(o.step - 1) * o.lr_decay));
  c.eps = o.eps;
  d->b.s[0] = sum_sq;
  return OptimizerStep(std::move(d));
}

OptimizerStep OptimizerStep::rmsprop(float* params, float* square_avg, float* momentum_buf,
                                     float* grad_avg, long n, const RmspropOptions& o,
                                     DecayRanges decay) {
  check_options(o);
  const bool momentum = o.momentum > 0.0f;
  if (momentum && !momentum_buf)
    throw std::invalid_argument("momentum_buf: momentum=" + num(o.momentum) +
                                " needs a float32 buffer of the parameters' length (zeros at first)");
  if (o.centered && !grad_avg)
    throw std::invalid_argument("grad_avg: centered=True needs a float32 buffer of the "
                                "parameters' length (zeros at first)");
  auto d = new_desc(optim::Kind::rmsprop, params, n, decay);
  optim::RmspropScalars& c = d->rmsprop;
  c.reg = {o.weight_decay, o.l1};
  c.neg_lr = -o.lr;
  c.alpha = o.alpha;
  c.one_minus_alpha = 1.0f - o.alpha;
  c.eps = o.eps;
  c.mu = o.momentum;
  c.momentum = momentum;
  c.centered = o.centered;
  int k = 0;
  d->b.s[k++] = square_avg;
  if (momentum) d->b.s[k++] = momentum_buf;
  if (o.centered) d->b.s[k++] = grad_avg;
  return OptimizerStep(std::move(d));
}

OptimizerStep OptimizerStep::adadelta(float* params, float* square_avg, float* acc_delta, long n,
                                      const AdadeltaOptions& o, DecayRanges decay) {
  check_options(o);
  auto d = new_desc(optim::Kind::adadelta, params, n, decay);
  optim::AdadeltaScalars& c = d->adadelta;
  c.reg = {o.weight_decay, o.l1};
  c.neg_lr = -o.lr;
  c.rho = o.rho;
  c.one_minus_rho = 1.0f - o.rho;
  c.eps = o.eps;
  d->b.s[0] = square_avg;
  d->b.s[1] = acc_delta;
  return OptimizerStep(std::move(d));
}

OptimizerStep OptimizerStep::adam(float* params, float* exp_avg, float* exp_avg_sq, long n,
                                  const AdamOptions& o, DecayRanges decay) {
  check_options(o);
  auto d = new_desc(optim::Kind::adam, params, n, decay);
  optim::AdamScalars& c = d->adam;
  c.reg = {o.decoupled ? 0.0f : o.weight_decay, o.l1};
  c.one_minus_beta1 = 1.0f - o.beta1;
  c.beta2 = o.beta2;
  c.one_minus_beta2 = 1.0f - o.beta2;
  c.eps = o.eps;
  // As torch.optim: Python-float (double) bias corrections, cast once.
  const double bc1 = 1.0 - std::pow((double)o.beta1, (double)o.step);
  const double bc2 = 1.0 - std::pow((double)o.beta2, (double)o.step);
  c.neg_step_size = (float)(-(double)o.lr / bc1);
  c.inv_bc2_sqrt = (float)(1.0 / std::sqrt(bc2));
  c.decay_factor = o.decoupled ? (float)(1.0 - (double)o.lr * o.weight_decay) : 1.0f;
  d->b.s[0] = exp_avg;
  d->b.s[1] = exp_avg_sq;
  return OptimizerStep(std::move(d));
}

long OptimizerStep::size() const { return d_->b.n; }
float* OptimizerStep::params() const { return d_->b.p; }

void OptimizerStep::apply(const float* g, long begin, long end) const {
  if (begin < 0 || end > d_->b.n || begin > end)
    throw std::out_of_range("apply: range [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") is outside the buffer [0, " + std::to_string(d_->b.n) + ")");
  FASTDL_OPTIM_DISPATCH(run, *d_, g, begin, end);
}

void OptimizerStep::apply_block(const float* g, long ldg, long offset, long ld, long rows,
                                long cols) const {
  FASTDL_OPTIM_DISPATCH(run_block, *d_, g, ldg, offset, ld, rows, cols);
}

void OptimizerStep::prefetch_block(long offset, long ld, long rows, long cols) const {
  const optim::Buffers& b = d_->b;
  constexpr long kLine = 64 / sizeof(float);
  for (long r = 0; r < rows; ++r) {
    const long lo = offset + r * ld, hi = lo + cols;
    for (long i = lo; i < hi + kLine - 1; i += kLine) {
      const long e = i < hi ? i : hi - 1;  // the last line of the row, once
      __builtin_prefetch(b.p + e, 1, 2);
      for (float* s : b.s)
        if (s) __builtin_prefetch(s + e, 1, 2);
    }
  }
}

void sgd_step(float* params, float* momentum_buf, const float* grads, long n,
              const SgdOptions& o, DecayRanges decay) {
  OptimizerStep::sgd(params, momentum_buf, n, o, decay).apply(grads, 0, n);
}

void adagrad_step(float* params, float* sum_sq, const float* grads, long n,
                  const AdagradOptions& o, DecayRanges decay) {
  OptimizerStep::adagrad(params, sum_sq, n, o, decay).apply(grads, 0, n);
}

void rmsprop_step(float* params, float* square_avg, float* momentum_buf, float* grad_avg,
                  const float* grads, long n, const RmspropOptions& o, DecayRanges decay) {
  OptimizerStep::rmsprop(params, square_avg, momentum_buf, grad_avg, n, o, decay)
      .apply(grads, 0, n);
}

void adadelta_step(float* params, float* square_avg, float* acc_delta, const float* grads,
                   long n, const AdadeltaOptions& o, DecayRanges decay) {
  OptimizerStep::adadelta(params, square_avg, acc_delta, n, o, decay).apply(grads, 0, n);
}

void adam_step(float* params, float* exp_avg, float* exp_avg_sq, const float* grads, long n,
               const AdamOptions& o, DecayRanges decay) {
  OptimizerStep::adam(params, exp_avg, exp_avg_sq, n, o, decay).apply(grads, 0, n);
}

void max_norm(float* w, long k, long m, float max_norm) {
  if (!(std::isfinite(max_norm) && max_norm > 0.0f)) bad("max_norm", "a finite number > 0", max_norm);
  if (k == 0 || m == 0) return;
  FASTDL_OPTIM_DISPATCH(max_norm, w, k, m, max_norm);
}

}  // namespace fastdl
