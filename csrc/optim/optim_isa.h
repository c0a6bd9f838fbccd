// Internal: what the dispatcher (optim.cpp) hands the per-ISA step kernels. The host
// side validates the options, normalises the decay ranges and folds every per-call
// scalar (bias corrections, 1 - beta, -lr...) so the hot loop only does the math.
#pragma once
#include <vector>

namespace fastdl::optim {

// Below this many elements a step runs on one thread (the fork costs more than the
// second core gives): OptimizerStep::apply and dense_stack_train's owned step alike.
constexpr long kParallelMin = 1L << 15;

// Sorted, disjoint, non-empty [start, stop) ranges that get weight decay / L1.
struct Spans {
  const long* bounds;  // 2 * count entries
  long count;
};

// Coupled regularisation added to the gradient inside the spans.
struct Regularizer {
  float wd = 0.0f;  // g += wd * theta (0 for AdamW, whose decay is decoupled)
  float l1 = 0.0f;  // g += l1 * sign(theta)
};

struct SgdScalars {
  Regularizer reg;
  float neg_lr, mu, one_minus_damp, neg_lr_damped;  // neg_lr_damped = -lr*(1-dampening)
  bool has_buf, nesterov, first_step, classic;
};
struct AdagradScalars {
  Regularizer reg;
  float neg_clr, eps;
};
struct RmspropScalars {
  Regularizer reg;
  float neg_lr, alpha, one_minus_alpha, eps, mu;
  bool momentum, centered;
};
struct AdadeltaScalars {
  Regularizer reg;
  float neg_lr, rho, one_minus_rho, eps;
};
struct AdamScalars {
  Regularizer reg;
  float one_minus_beta1, beta2, one_minus_beta2, eps;
  float neg_step_size;   // -lr / (1 - beta1^t)
  float inv_bc2_sqrt;    // 1 / sqrt(1 - beta2^t)
  float decay_factor;    // 1 - lr*wd inside the spans for AdamW, else 1
};

// Buffers of one step: params and up to three state buffers, all n long.
struct Buffers {
  float* p;
  float* s[3];
  long n;
};

// A prepared step (fastdl::OptimizerStep): which optimizer, its folded scalars (only
// the kind's own are set), its buffers and its decay spans.
enum class Kind { sgd, adagrad, rmsprop, adadelta, adam };
struct StepDesc {
  Kind kind;
  Buffers b;
  SgdScalars sgd;
  AdagradScalars adagrad;
  RmspropScalars rmsprop;
  AdadeltaScalars adadelta;
  AdamScalars adam;
  std::vector<long> bounds;  // the sorted, disjoint decay spans, 2 per span
  Spans spans() const { return {bounds.data(), (long)bounds.size() / 2}; }
};

#define FASTDL_OPTIM_ISA_DECLS                                                          \
  void run(const StepDesc& d, const float* g, long begin, long end);                    \
  void run_block(const StepDesc& d, const float* g, long ldg, long offset, long ld,     \
                 long rows, long cols);                                                 \
  void max_norm(float* w, long k, long m, float max_norm);

namespace avx512 { FASTDL_OPTIM_ISA_DECLS }
namespace avx2 { FASTDL_OPTIM_ISA_DECLS }
namespace generic { FASTDL_OPTIM_ISA_DECLS }

#undef FASTDL_OPTIM_ISA_DECLS

}  // namespace fastdl::optim
