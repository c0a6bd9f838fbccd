#include "dense/owned_step.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fastdl/runtime.h"
#include "gemm/gemm_isa.h"
#include "optim/optim_isa.h"

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num() { return 0; }
static inline int omp_get_num_threads() { return 1; }
#endif

namespace fastdl {

namespace {

enum class Part { w, b, alpha };

// One parameter of one layer inside the step's buffer.
struct Param {
  long begin, end;
  int layer;
  Part part;
};

std::string param_name(int layer, Part part) {
  static const char* const names[] = {"w", "b", "alpha_vec"};
  return "layers[" + std::to_string(layer) + "]." + names[(int)part];
}

// p's offset in the step's buffer, which must hold all `len` of its elements.
long offset_in(const OptimizerStep& step, const float* p, long len, int layer, Part part) {
  const auto base = reinterpret_cast<std::uintptr_t>(step.params());
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const long n = step.size();
  if (at < base || (at - base) % sizeof(float) != 0 ||
      (long)((at - base) / sizeof(float)) > n - len)
    throw std::invalid_argument(param_name(layer, part) +
                                ": not inside the step's parameter buffer (" +
                                std::to_string(n) +
                                " floats); with a step, every parameter must be a view into it");
  return (long)((at - base) / sizeof(float));
}

void need_gradient(const float* g, int layer, const char* grad, Part part) {
  if (!g)
    throw std::invalid_argument("layers[" + std::to_string(layer) + "]." + grad +
                                ": null, but the step updates " + param_name(layer, part) +
                                " from it");
}

// The plan itself (plan_owned_step keeps it).
void make_owned_plan(const OptimizerStep& step, const DenseStackLayer* layers, int count, long n,
                     int threads, Precision precision, std::vector<OwnedBlock>& blocks) {
  blocks.clear();
  // Reused between steps: a training step allocates nothing once warm.
  static thread_local std::vector<Param> params;
  params.clear();
  for (int i = 0; i < count; ++i) {
    const DenseStackLayer& l = layers[i];
    need_gradient(l.dw, i, "dw", Part::w);
    const long w0 = offset_in(step, l.w, l.k * l.m, i, Part::w);
    params.push_back({w0, w0 + l.k * l.m, i, Part::w});
    long b0 = -1, a0 = -1;
    if (l.b) {
      need_gradient(l.db, i, "db", Part::b);
      b0 = offset_in(step, l.b, l.m, i, Part::b);
      params.push_back({b0, b0 + l.m, i, Part::b});
    }
    const bool alpha = l.act == Activation::prelu && l.alpha_vec;
    if (alpha) {
      need_gradient(l.dalpha, i, "dalpha", Part::alpha);
      a0 = offset_in(step, l.alpha_vec, l.m, i, Part::alpha);
      params.push_back({a0, a0 + l.m, i, Part::alpha});
    }
    // Who reads which part of w in this layer's forward GEMM (dense_forward's: x (n, k)
    // @ w (k, m); its epilogue does not change the partition).
    GemmArgs fwd{n, l.m, l.k, nullptr, l.k, 1, l.w, l.m, 1, l.y, l.m, false, nullptr};
    fwd.precision = precision;
    static thread_local std::vector<GemmBPart> parts;
    parts.clear();
    bool by_gemm = threads > 1 && l.k > 0 && l.m > 0;
    bool by_columns = by_gemm;  // every thread's part spans all of w's rows
    long area = 0;
    for (int t = 0; t < threads && by_gemm; ++t) {
      const GemmBPart p = parts.emplace_back(sgemm_b_part(fwd, t));
      by_gemm = !p.shared;
      by_columns = by_columns && (p.cols == 0 || p.rows == l.k);
      area += p.rows * p.cols;
    }
    by_gemm = by_gemm && area == l.k * l.m;
    // Biases are read in the forward's epilogue: by the thread computing those columns
    // where w's columns are split, else by the calling thread.
    auto add_vectors = [&](int t, long c0, long cols) {
      if (b0 >= 0) blocks.push_back({t, l.db + c0, cols, b0 + c0, cols, 1, cols});
      if (a0 >= 0) blocks.push_back({t, l.dalpha + c0, cols, a0 + c0, cols, 1, cols});
    };
    if (!by_gemm) {
      // One thread, or every thread reads all of w (C's rows are split): even rows.
      for (int t = 0; t < threads; ++t) {
        const long r0 = l.k * t / threads, r1 = l.k * (t + 1) / threads;
        if (r1 > r0)
          blocks.push_back({t, l.dw + r0 * l.m, l.m, w0 + r0 * l.m, l.m, 1, (r1 - r0) * l.m});
      }
      add_vectors(0, 0, l.m);
      continue;
    }
    for (int t = 0; t < threads; ++t) {
      const GemmBPart& p = parts[t];
      if (p.rows <= 0 || p.cols <= 0) continue;
      const long at = p.row0 * l.m + p.col0;
      if (p.cols == l.m)  // whole rows: one contiguous run
        blocks.push_back({t, l.dw + at, l.m, w0 + at, l.m, 1, p.rows * l.m});
      else
        blocks.push_back({t, l.dw + at, l.m, w0 + at, l.m, p.rows, p.cols});
      if (by_columns) add_vectors(t, p.col0, p.cols);
    }
    if (!by_columns) add_vectors(0, 0, l.m);
  }
  // The parameters must tile the buffer: each element updated exactly once.
  std::sort(params.begin(), params.end(),
            [](const Param& a, const Param& b) { return a.begin < b.begin; });
  auto refuse_gap = [](long from, long to) {
    throw std::invalid_argument("step: elements [" + std::to_string(from) + ", " +
                                std::to_string(to) +
                                ") of its buffer are no layer's parameters; it must hold "
                                "exactly the stack's parameters");
  };
  long pos = 0;
  for (const Param& p : params) {
    if (p.begin < pos)
      throw std::invalid_argument(param_name(p.layer, p.part) +
                                  ": overlaps another parameter in the step's buffer (at " +
                                  std::to_string(p.begin) + ")");
    if (p.begin > pos) refuse_gap(pos, p.begin);
    pos = p.end;
  }
  if (pos != step.size()) refuse_gap(pos, step.size());
}

// Everything a plan depends on: the step's buffer, the batch size, the threads, the
// kernel path and precision (the GEMMs' partition differs per path) and every layer's shapes,
// activation and pointers. A training loop plans once and then compares ~60 words a
// step, far cheaper than planning again.
void plan_key(const OptimizerStep& step, const DenseStackLayer* layers, int count, long n,
              int threads, Precision precision, std::vector<std::uintptr_t>& key) {
  auto word = [&](auto v) { key.push_back((std::uintptr_t)v); };
  key.clear();
  word(step.params()), word(step.size()), word(n), word(threads), word((int)active_isa());
  word((int)active_bf16_unit());
  word((int)precision);
  for (int i = 0; i < count; ++i) {
    const DenseStackLayer& l = layers[i];
    word(l.w), word(l.b), word(l.k), word(l.m), word((int)l.act), word(l.alpha_vec);
    word(l.y), word(l.dw), word(l.db), word(l.dalpha);
  }
}

}  // namespace

int owned_step_threads(const OptimizerStep& step) {
  return step.size() < optim::kParallelMin ? 1 : get_num_threads();
}

const std::vector<OwnedBlock>& plan_owned_step(const OptimizerStep& step,
                                               const DenseStackLayer* layers, int count,
                                               long n, int threads, Precision precision) {
  static thread_local std::vector<std::uintptr_t> key, planned;
  static thread_local std::vector<OwnedBlock> plan;
  plan_key(step, layers, count, n, threads, precision, key);
  if (key != planned) {
    planned.clear();  // until the new plan is complete: a throw leaves no stale one
    make_owned_plan(step, layers, count, n, threads, precision, plan);
    planned = key;
  }
  return plan;
}

void apply_owned_step(const OptimizerStep& step, const std::vector<OwnedBlock>& blocks,
                      int threads) {
  auto apply = [&](const OwnedBlock& b) {
    step.apply_block(b.g, b.ldg, b.offset, b.ld, b.rows, b.cols);
  };
  if (threads <= 1) {
    for (const OwnedBlock& b : blocks) apply(b);
    return;
  }
  bool failed = false;
#pragma omp parallel num_threads(threads)
  {
    // Where OpenMP gives fewer threads than asked, thread t also takes the blocks of
    // t + T, t + 2T, ...: every block runs once.
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    try {
      for (const OwnedBlock& b : blocks)
        if (b.thread % T == t) apply(b);
    } catch (...) {  // an exception must not leave an OpenMP region
#pragma omp atomic write
      failed = true;
    }
  }
  if (failed) throw std::runtime_error("dense_stack_train: the optimizer step failed");
}

}  // namespace fastdl
