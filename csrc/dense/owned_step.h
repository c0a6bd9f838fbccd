// Internal: dense_stack_train's optimizer step, taken by the threads that ran the
// forward pass, each on the parameters it read there (owner-computes; the contract is
// in fastdl/dense_stack.h).
#pragma once
#include <vector>

#include "fastdl/dense_stack.h"

namespace fastdl {

// A rows x cols block of the step's buffer (element (r, c) at offset + r * ld + c), its
// gradient (g[r * ldg + c]) and the thread that updates it.
struct OwnedBlock {
  int thread;
  const float* g;
  long ldg;
  long offset, ld, rows, cols;
};

// The step's buffer cut into blocks, each element in exactly one, for a pass of the
// stack at batch size n on `threads` threads (the GEMMs' team: get_num_threads(), or 1
// for a buffer too small to split). Throws std::invalid_argument, naming the layer,
// where the layers' parameters do not tile the buffer or a parameter has no gradient.
// The plan is kept per calling thread and reused while nothing it depends on changes;
// the reference is valid until this thread's next call. precision: the forward GEMMs'
// (their partition differs per path).
const std::vector<OwnedBlock>& plan_owned_step(const OptimizerStep& step,
                                               const DenseStackLayer* layers, int count,
                                               long n, int threads, Precision precision);

// The threads plan_owned_step should plan for.
int owned_step_threads(const OptimizerStep& step);

// Applies every block on its thread, in one parallel region.
void apply_owned_step(const OptimizerStep& step, const std::vector<OwnedBlock>& blocks,
                      int threads);

}  // namespace fastdl
