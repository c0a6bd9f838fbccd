// Fused optimizer steps: one pass over a flat float32 parameter buffer, updating the
// parameters and the optimizer state in place. Every buffer holds n floats, element i
// of each belonging to parameter i. Formulas and defaults are torch.optim's (see each
// options struct); `lr` is given on every call so schedules stay with the caller.
//
// Weight decay and L1 apply only inside the decay ranges: `decay` holds `n_decay`
// [start, stop) pairs (int64, 0 <= start <= stop <= n; they may overlap or come in any
// order: the decayed set is their union), or is null for "the whole buffer" — that is how a network exempts its biases.
// L1 adds l1 * sign(theta) to the gradient, like coupled L2 adds weight_decay * theta.
//
// The update is elementwise, so the result does not depend on the thread count or the
// instruction-set path beyond float rounding (FMA contraction differs per path).
// Errors: std::invalid_argument (naming the option) for a bad hyperparameter, a missing
// state buffer or a decay range outside [0, n].
#pragma once
#include <cstdint>
#include <memory>
#include <utility>

namespace fastdl {

// A set of [start, stop) ranges of the flat buffer (null ranges: all of it).
struct DecayRanges {
  const int64_t* ranges = nullptr;  // (count, 2), row-major
  long count = 0;
};

struct SgdOptions {
  float lr = 1e-3f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;    // needs momentum > 0 and dampening == 0 (as PyTorch)
  bool first_step = false;  // PyTorch's buffer init: buf = g (undampened) instead of mu*buf + ...
  bool classic = false;     // v = mu*v - lr*(1-dampening)*g; theta += v (nesterov: theta += mu*v - lr*g)
  float l1 = 0.0f;
};
// PyTorch form: b = mu*b + (1-dampening)*g (b = g on the first step); theta -= lr*b
// (nesterov: theta -= lr*(g + mu*b)), with g = grad + weight_decay*theta + l1*sign(theta).
// momentum_buf may be null when momentum == 0.
void sgd_step(float* params, float* momentum_buf, const float* grads, long n,
              const SgdOptions& o, DecayRanges decay = {});

struct AdagradOptions {
  float lr = 1e-2f;
  long step = 1;  // 1-based
  float lr_decay = 0.0f;
  float weight_decay = 0.0f;
  float eps = 1e-10f;
  float l1 = 0.0f;
};
// sum_sq += g^2; theta -= lr / (1 + (step-1)*lr_decay) * g / (sqrt(sum_sq) + eps).
// PyTorch's initial_accumulator_value is the caller's: fill sum_sq with it once.
void adagrad_step(float* params, float* sum_sq, const float* grads, long n,
                  const AdagradOptions& o, DecayRanges decay = {});

struct RmspropOptions {
  float lr = 1e-2f;
  float alpha = 0.99f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float momentum = 0.0f;
  bool centered = false;
  float l1 = 0.0f;
};
// sq = alpha*sq + (1-alpha)*g^2; centered: ga = lerp(ga, g, 1-alpha), var = sq - ga^2
// (clamped at 0: PyTorch would take the sqrt of a rounding-negative value and get NaN);
// d = g / (sqrt(var) + eps); momentum > 0: buf = mu*buf + d, theta -= lr*buf; else
// theta -= lr*d. momentum_buf is needed when momentum > 0, grad_avg when centered
// (null otherwise); both start at zero.
void rmsprop_step(float* params, float* square_avg, float* momentum_buf, float* grad_avg,
                  const float* grads, long n, const RmspropOptions& o, DecayRanges decay = {});

struct AdadeltaOptions {
  float lr = 1.0f;
  float rho = 0.9f;
  float eps = 1e-6f;
  float weight_decay = 0.0f;
  float l1 = 0.0f;
};
// sq = rho*sq + (1-rho)*g^2; delta = sqrt(acc + eps) / sqrt(sq + eps) * g;
// acc = rho*acc + (1-rho)*delta^2; theta -= lr*delta.
void adadelta_step(float* params, float* square_avg, float* acc_delta, const float* grads,
                   long n, const AdadeltaOptions& o, DecayRanges decay = {});

struct AdamOptions {
  float lr = 1e-3f;
  long step = 1;  // 1-based, for the bias corrections
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;  // AdamW: theta *= 1 - lr*weight_decay instead of coupled L2
  float l1 = 0.0f;         // always added to the gradient
};
// m = lerp(m, g, 1-beta1); v = beta2*v + (1-beta2)*g^2;
// theta -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
void adam_step(float* params, float* exp_avg, float* exp_avg_sq, const float* grads, long n,
               const AdamOptions& o, DecayRanges decay = {});

// The hyperparameter rules of each optimizer (torch.optim's constructors'): ranges and the
// rules that tie arguments together (Nesterov needs momentum > 0 and dampening == 0).
// Every step runs them; these let a caller check options before any step (fastdl.optim's
// optimizers do when they are built or changed, the GPU steps before they launch): the
// one place each rule lives. Throw std::invalid_argument naming the argument.
void check_options(const SgdOptions& o);
void check_options(const AdagradOptions& o);
void check_options(const RmspropOptions& o);
void check_options(const AdadeltaOptions& o);
void check_options(const AdamOptions& o);

// One step of any of the optimizers above, prepared once (options checked, decay ranges
// normalised, per-call scalars folded) and then applied in pieces as the gradients come:
// a network's backward pass hands each weight matrix's gradient to it tile by tile from
// the GEMM that produces them (dense_backward's `update`), while the tile is still in
// cache, and applies the rest of the buffer afterwards. Applying each element exactly
// once gives the matching *_step function's result bit for bit. The buffers are held by
// pointer: they must outlive the step. Copies share the prepared state.
namespace optim { struct StepDesc; }
class OptimizerStep {
 public:
  static OptimizerStep sgd(float* params, float* momentum_buf, long n, const SgdOptions& o,
                           DecayRanges decay = {});
  static OptimizerStep adagrad(float* params, float* sum_sq, long n, const AdagradOptions& o,
                               DecayRanges decay = {});
  static OptimizerStep rmsprop(float* params, float* square_avg, float* momentum_buf,
                               float* grad_avg, long n, const RmspropOptions& o,
                               DecayRanges decay = {});
  static OptimizerStep adadelta(float* params, float* square_avg, float* acc_delta, long n,
                                const AdadeltaOptions& o, DecayRanges decay = {});
  static OptimizerStep adam(float* params, float* exp_avg, float* exp_avg_sq, long n,
                            const AdamOptions& o, DecayRanges decay = {});

  long size() const;        // n: the flat buffer's length
  float* params() const;    // the flat parameter buffer it updates
  // Updates elements [begin, end) (0 <= begin <= end <= n) from their gradient:
  // g[i - begin] is element i's. Spread over the threads.
  void apply(const float* g, long begin, long end) const;
  // Updates a rows x cols block of a row-major matrix held in the flat buffer: element
  // (r, c) is flat index offset + r * ld + c, its gradient g[r * ldg + c]. On the calling
  // thread (a GEMM's worker calls it with one output tile). The caller keeps the block
  // inside [0, n).
  void apply_block(const float* g, long ldg, long offset, long ld, long rows, long cols) const;
  // Asks the caches for what apply_block(.., offset, ld, rows, cols) will touch.
  void prefetch_block(long offset, long ld, long rows, long cols) const;

 private:
  explicit OptimizerStep(std::shared_ptr<const optim::StepDesc> d) : d_(std::move(d)) {}
  std::shared_ptr<const optim::StepDesc> d_;
};

// w is (k, m), row-major: column j (unit j's incoming weights) is scaled by
// max_norm / (norm_j + 1e-7) where its L2 norm_j exceeds max_norm (torch.renorm).
void max_norm(float* w, long k, long m, float max_norm);

}  // namespace fastdl
