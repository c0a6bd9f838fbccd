"""How a training step is taken: chosen once, at ``compile``, and visible to the user.

A step is forward, loss, backward and one optimizer update. fastdl has two ways of
running the first three and three places for the update, and the plan names both:

``execution``
    ``"layers"``: one kernel call per stage and pass. ``"dense_stack"``: a CPU network of
    plain Dense layers (no Dropout, BatchNorm or Maxout) runs forward, loss and backward
    as one call (``fastdl.kernels.DenseStack``): a small network would otherwise spend a
    large part of its step crossing from Python into the kernels. ``"fused_mlp"``: on
    the GPU, a narrow network of Dense layers (every width <= 128, one hidden activation,
    a linear last layer) runs through the fused small-MLP kernels
    (``fastdl.cuda.FusedMLPStep``): 5 or 6 launches a step instead of about 4 per layer.
``optimizer_step``
    ``"separate"``: one fused optimizer pass over the whole flat buffer after the
    backward. ``"in_backward"``: each Dense/Maxout weight matrix is updated inside its
    weight-gradient GEMM while each gradient tile is in registers, the rest of the
    buffer (biases, PReLU slopes, BatchNorm's gamma/beta) in one call after; the pass
    over parameters, gradients and optimizer state from memory is saved, and those
    matrices' gradients never reach ``flat_grads``. ``"in_stack"``: the whole update
    inside the DenseStack call, after its backward, each parameter updated by the
    thread that read it in the forward pass (so the next step finds it in its own
    core's cache).

Every plan gives the same parameters, bit for bit (tests/test_step_in_backward.py,
tests/test_dense_stack.py); what differs is memory traffic and calls. ``compile``'s
``optimizer_step="auto"`` chooses by the sizes below; ``model.step_plan`` says what was
chosen and why, and ``model.summary()`` prints it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np

from fastdl import losses as losses_mod
from fastdl._C import last_level_cache_bytes
from fastdl._stages import DenseStage, MaxoutStage

if TYPE_CHECKING:
    from fastdl._stages import Stage
    from fastdl.cuda.fused_step import Support
    from fastdl.optim import Optimizer

__all__ = ["StepPlan", "OPTIMIZER_STEPS", "IN_BACKWARD_MIN_WEIGHTS", "choose"]

OPTIMIZER_STEPS = ("auto", "separate", "in_backward", "in_stack")

# Below this many weights in the matrices a backward kernel could update, a separate
# optimizer pass runs on cache-resident state, and stepping inside the backward only adds
# calls and keeps the backward's two GEMMs from running side by side. Above it, "auto"
# steps inside the backward only where the separate pass would stream its buffers from
# memory: where they take more than half the last-level cache (the step's weights,
# activations and GEMM buffers pass through it too). Measurements behind both rules:
# docs/benchmarks.md, "Measurement history".
IN_BACKWARD_MIN_WEIGHTS = 1 << 20


class StepPlan:
    """The plan of a compiled model's training step (``model.step_plan``).

    execution: "layers" or "dense_stack"; optimizer_step: "separate", "in_backward" or
    "in_stack"; reason: why compile chose it (or that it was asked for)."""

    def __init__(self, execution: str, optimizer_step: str, reason: str) -> None:
        self.execution = execution
        self.optimizer_step = optimizer_step
        self.reason = reason

    @property
    def fills_gradients(self) -> bool:
        """Whether a step leaves every parameter's gradient in ``flat_grads`` (the step
        inside the backward kernels does not keep the weight matrices' gradients)."""
        return self.optimizer_step != "in_backward"

    def describe(self) -> str:
        """One line: what runs, and why."""
        how = {"separate": "a separate optimizer pass after the backward",
               "in_backward": "each weight matrix updated inside its backward kernel, the rest after",
               "in_stack": "inside the one-call DenseStack, after its backward"}[self.optimizer_step]
        kernels = {"layers": "a kernel call per layer", "dense_stack": "one DenseStack call",
                   "fused_mlp": "the fused small-MLP kernels"}[self.execution]
        return f"{self.optimizer_step} ({how}; {kernels}): {self.reason}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepPlan) and (self.execution, self.optimizer_step) == (
            other.execution, other.optimizer_step)

    def __hash__(self) -> int:
        return hash((self.execution, self.optimizer_step))

    def __repr__(self) -> str:
        return (f"StepPlan(optimizer_step={self.optimizer_step!r}, execution={self.execution!r}, "
                f"reason={self.reason!r})")


def dense_stack_applies(stages: Sequence[Stage], loss: losses_mod.Loss, backend_name: str) -> bool:
    """Whether forward, loss and backward can run as one DenseStack call: a CPU network
    of Dense layers only, without dropout, and one of the three fused losses."""
    return (backend_name == "cpu" and all(type(s) is DenseStage and not s.p for s in stages)
            and type(loss) in (losses_mod.SoftmaxCrossEntropy, losses_mod.MSE, losses_mod.BinaryCrossEntropy))


def fused_mlp_support(stages: Sequence[Any], loss: losses_mod.Loss, backend_name: str) -> Support:
    """Whether a GPU network can take the fused small-MLP step (a Support: truthy, or
    falsy with the reason)."""
    from fastdl.cuda.fused_step import FusedMLPStep, Support

    if backend_name != "cuda":
        return Support(False, "the fused MLP runs on the GPU")
    if not all(type(s) is DenseStage for s in stages):
        return Support(False, "the fused MLP has Dense layers only (no Dropout, BatchNorm or Maxout layer)")
    hidden = {(s.act, s.scalar_alpha) for s in stages[:-1]}
    if len(hidden) > 1:
        return Support(False, "the fused MLP applies one activation to every hidden layer")
    act, alpha = next(iter(hidden)) if hidden else ("linear", None)
    return FusedMLPStep.supports(
        stages[0].w.shape[0], [s.m for s in stages], act, loss=loss.name,
        label_smoothing=getattr(loss, "label_smoothing", 0.0), last_linear=stages[-1].act == "linear",
        alpha=alpha, biases=all(s.b is not None for s in stages), dropout=any(s.p for s in stages))


def updated_stages(bwd_stages: Sequence[Stage]) -> list[DenseStage | MaxoutStage]:
    """The stages whose backward kernels can update their weight matrices."""
    return [s for s in bwd_stages if isinstance(s, (DenseStage, MaxoutStage))]


def separate_pass_leaves_cache(weights: int, state_buffers: int) -> bool:
    """Whether a separate optimizer pass over `weights` parameters (with their gradients
    and `state_buffers` state arrays) would stream from memory: more bytes than half the
    CPU's last-level cache, or a cache size the C library cannot tell."""
    cache = last_level_cache_bytes()
    return cache <= 0 or 4 * weights * (2 + state_buffers) > cache // 2


def choose(mode: str, stages: Sequence[Any], bwd_stages: Sequence[Any], loss: losses_mod.Loss, optimizer: Optimizer,
           backend_name: str, precision: str = "fp32") -> StepPlan:
    """The StepPlan for compile's optimizer_step=`mode`; a ValueError names what makes an
    asked-for plan impossible."""
    if mode not in OPTIMIZER_STEPS:
        raise ValueError(f"optimizer_step: expected one of {OPTIMIZER_STEPS}, got {mode!r}")
    execution = "dense_stack" if dense_stack_applies(stages, loss, backend_name) else "layers"
    if backend_name == "cuda" and fused_mlp_support(stages, loss, backend_name):
        execution = "fused_mlp"
    updated = updated_stages(bwd_stages)
    weights = sum(s.w.size for s in updated)
    if mode == "separate":
        return StepPlan(execution, "separate", "asked for (optimizer_step='separate')")
    if not updated:  # nothing a kernel could update: whatever was asked, one pass
        return StepPlan(execution, "separate", "no Dense or Maxout weight matrix to update inside a kernel")
    if backend_name != "cpu":
        if mode != "auto":
            raise ValueError(f"optimizer_step={mode!r}: a step inside the kernels is CPU only (this model is on "
                             f"{backend_name!r})")
        why = "" if execution == "fused_mlp" else f"; per-layer kernels: {fused_mlp_support(stages, loss, backend_name).reason}"
        return StepPlan(execution, "separate", f"on {backend_name}, one optimizer launch over the flat buffer{why}")
    if not optimizer.can_prepare_step():
        if mode != "auto":
            raise ValueError(f"optimizer_step={mode!r}: {type(optimizer).__name__} overrides _kernel_step, so it "
                             "cannot be applied inside a kernel; use 'separate' or 'auto'")
        return StepPlan(execution, "separate", f"{type(optimizer).__name__} can only step the whole buffer")
    if mode == "in_backward":
        return StepPlan(execution, "in_backward", "asked for (optimizer_step='in_backward')")
    if mode == "in_stack":
        if execution != "dense_stack":
            raise ValueError("optimizer_step='in_stack': needs a network that trains as one DenseStack call "
                             "(CPU, Dense layers only, no Dropout/BatchNorm/Maxout)")
        return StepPlan(execution, "in_stack", "asked for (optimizer_step='in_stack')")
    state = len(optimizer.state)
    state_mb = 4 * weights * (2 + state) / 1e6
    if weights >= IN_BACKWARD_MIN_WEIGHTS and separate_pass_leaves_cache(weights, state) and precision == "bf16":
        # The bf16 units finish a weight-gradient tile long before an update inside the
        # GEMM has fetched that tile's parameters and state: it would wait on memory tile
        # by tile, where a separate pass streams them.
        return StepPlan(execution, "separate", f"{weights:,} weights in bf16: a separate pass streams the "
                        f"{state_mb:.0f} MB faster than the bf16 GEMMs' tiles can fetch them")
    if weights >= IN_BACKWARD_MIN_WEIGHTS and separate_pass_leaves_cache(weights, state):
        cache = last_level_cache_bytes()
        where = f"{cache / 2**20:.0f} MiB" if cache > 0 else "an unknown size"
        return StepPlan(execution, "in_backward", f"{weights:,} weights: a separate pass would stream "
                        f"{state_mb:.0f} MB from memory (last-level cache {where})")
    if execution == "dense_stack" and weights < IN_BACKWARD_MIN_WEIGHTS:
        return StepPlan(execution, "in_stack", f"{weights:,} weights (< 2^20): the optimizer state stays in the "
                        "cores' caches, each thread updating what it read")
    if weights >= IN_BACKWARD_MIN_WEIGHTS:
        return StepPlan(execution, "separate", f"{weights:,} weights: the separate pass's {state_mb:.0f} MB fit "
                        "in half the last-level cache")
    return StepPlan(execution, "separate", f"{weights:,} weights (< 2^20): state in cache, fewer calls")


class Stepper:
    """Runs a compiled network's steps as its StepPlan says. The network builds it at
    compile (and again whenever the plan changes) with its stages, flat buffers, loss
    and optimizer; the buffers a step needs are kept per batch size, like the stages'."""

    def __init__(self, plan, graph, loss, optimizer, backend, precision="fp32"):
        self.plan = plan
        self.precision = precision
        g = graph
        self.stages, self.bwd_stages, self.bn_stages = g.stages, g.bwd_stages, g.bn_stages
        self.max_norm_stages = g.max_norm_stages
        self.max_norm_kernel = getattr(backend.kernels, "max_norm_") if g.max_norm_stages else None
        self.loss, self.optimizer, self.backend = loss, optimizer, backend
        self.flat_params, self.flat_grads = g.flat_params, g.flat_grads
        self.output_dim = g.output_dim
        self.last_output = None
        self._loss_grads = {}  # output rows -> the loss gradient's buffer
        self._stacks: dict[int, Any] | None = {} if plan.execution == "dense_stack" else None
        self._fused = self._fused_step(loss) if plan.execution == "fused_mlp" else None
        self._prepared_rows = set()
        self.rest_segments = self._rest_segments() if plan.optimizer_step == "in_backward" else None

    def _rest_segments(self):
        """The flat-buffer ranges the optimizer still applies after a backward that updated
        the weight matrices (int64 (S, 2))."""
        taken = sorted((s.w_offset, s.w.size) for s in updated_stages(self.bwd_stages))
        rest, pos = [], 0
        for off, size in taken:
            if off > pos:
                rest.append((pos, off))
            pos = off + size
        total = self.flat_params.shape[0]
        if pos < total:
            rest.append((pos, total))
        return np.array(rest, np.int64).reshape(-1, 2)

    def _fused_step(self, loss):
        from fastdl.cuda.fused_step import FusedMLPStep

        stages = self.stages
        act = stages[0].act if len(stages) > 1 else "linear"
        return FusedMLPStep(stages[0].w.shape[0], [s.m for s in stages], act, params=self.flat_params,
                            grads=self.flat_grads, loss=loss.name,
                            label_smoothing=getattr(loss, "label_smoothing", 0.0),
                            alpha=stages[0].scalar_alpha if len(stages) > 1 else None)

    # -- buffers per batch size ------------------------------------------------------
    def _loss_grad(self, rows):
        grad = self._loss_grads.get(rows)
        if grad is None:
            grad = self._loss_grads[rows] = self.backend.empty((rows, self.output_dim))
        return grad

    def release_rows(self, rows):
        self._loss_grads.pop(rows, None)
        if self._stacks is not None:
            self._stacks.pop(rows, None)
        self._prepared_rows.discard(rows)

    def _stack(self, n):
        """The DenseStack over the stages' buffers for batch size n (built on its first
        step, like the buffers themselves)."""
        stacks = cast("dict[int, Any]", self._stacks)  # the plan runs a DenseStack
        stack = stacks.get(n)
        if stack is None:
            layers = []
            for s in self.stages:
                shape = (n, s.m)
                layers.append({
                    "w": s.w, "b": s.b, "activation": s.act, "alpha": s.alpha,
                    "y": s._kept("y", shape), "z": s._kept("z", shape) if s.needs_z else None,
                    "dx": s._kept("dx", (n, s.w.shape[0])) if s.need_dx else None,
                    "dw": s.gw, "db": s.gb, "dalpha": s.galpha if s.prelu else None})
            smoothing = getattr(self.loss, "label_smoothing", 0.0)
            stack = self.backend.kernels.DenseStack(
                layers, loss=self.loss.name, dout=self._loss_grad(n), label_smoothing=smoothing,
                precision=self.precision)
            # The stack with the output buffer it fills (the last layer's y).
            stack = stacks[n] = (stack, layers[-1]["y"])
        return stack

    # -- the passes ------------------------------------------------------------------------
    def _forward_loss(self, x, y, w, step):
        h = x
        for stage in self.stages:
            h = stage.forward_train(h, step)
        self.last_output = h
        grad = self._loss_grad(h.shape[0])
        if w is None:
            return self.loss(h, y, out=grad)
        return self.loss(h, y, out=grad, sample_weight=w)

    def _backward(self, d, update=None):
        for stage in self.bwd_stages:
            d = stage.backward(d, update)

    def _stack_train(self, x, y, w, **how):
        stack, output = self._stacks.get(x.shape[0]) or self._stack(x.shape[0])  # type: ignore[union-attr]
        loss = stack.train(x, y, **how) if w is None else stack.train(x, y, sample_weight=w, **how)
        self.last_output = output
        return loss

    def _fused_train(self, x, y, w, finite_only=False):
        """The fused MLP's forward, loss and backward, or None where it does not apply
        (per-sample weights: its loss has none, the per-layer path takes those batches)."""
        if self._fused is None or w is not None:
            return None
        loss = self._fused.train(x, y, backward_if_nonfinite=not finite_only)
        self.last_output = self._fused.last_output
        return loss

    def gradients(self, x, y, w, step):
        """Forward, loss and backward: every gradient in flat_grads; returns the loss."""
        if self._stacks is not None and x.shape[0] > 0:
            return self._stack_train(x, y, w)
        loss = self._fused_train(x, y, w)
        if loss is not None:
            return loss
        loss, d = self._forward_loss(x, y, w, step)
        self._backward(d)
        return loss

    def apply(self):
        """The separate optimizer pass (then max-norm)."""
        self.optimizer.step(self.flat_params, self.flat_grads)
        self.apply_max_norm()

    def apply_max_norm(self):
        if self.max_norm_kernel is not None:
            for stage in self.max_norm_stages:
                self.max_norm_kernel(stage.w, stage.max_norm)

    def step(self, x, y, w, step, finite_only):
        """One planned step; returns the loss. With finite_only a non-finite loss applies
        nothing (and puts the BatchNorm running statistics back)."""
        for st in self.bn_stages:
            st.keep_running_stats()
        placement = self.plan.optimizer_step
        stack = self._stacks is not None and x.shape[0] > 0
        if placement == "separate" or (placement == "in_stack" and not stack):
            loss = self._separate(x, y, w, step, finite_only)
        elif stack:
            loss = self._stack_step(x, y, w, finite_only)
        else:
            loss = self._in_backward(x, y, w, step, finite_only)
        if finite_only and not math.isfinite(loss):
            for st in self.bn_stages:
                st.restore_running_stats()
        return loss

    def _separate(self, x, y, w, step, finite_only):
        fused = self._fused_train(x, y, w, finite_only)
        if fused is not None:
            loss = fused
        elif self._stacks is not None and x.shape[0] > 0:
            loss = self._stack_train(x, y, w)
        else:
            loss, d = self._forward_loss(x, y, w, step)
            if finite_only and not math.isfinite(loss):
                return loss
            self._backward(d)
        if not finite_only or math.isfinite(loss):
            self.apply()
        return loss

    def _stack_step(self, x, y, w, finite_only):
        update = self.optimizer.prepare_step(self.flat_params)
        # Each w stepped in its backward kernel and the rest after ("in_backward"), or
        # the whole step inside the call, after its backward ("in_stack").
        how = {"update": update} if self.rest_segments is not None else {"step": update}
        try:
            loss = self._stack_train(x, y, w, backward_if_nonfinite=not finite_only, **how)
        except BaseException:
            self.optimizer.cancel_prepared_step()
            raise
        if finite_only and not math.isfinite(loss):
            self.optimizer.cancel_prepared_step()  # no backward ran, so no step
            return loss
        if self.rest_segments is not None:
            update.apply(self.flat_grads, segments=self.rest_segments)
        self.apply_max_norm()
        return loss

    def _in_backward(self, x, y, w, step, finite_only):
        rows = x.shape[0]
        if rows not in self._prepared_rows:  # nothing may fail for memory half-way through
            for stage in self.bwd_stages:
                stage.prepare_backward(rows)
            self._prepared_rows.add(rows)
        loss, d = self._forward_loss(x, y, w, step)
        if finite_only and not math.isfinite(loss):
            return loss
        update = self.optimizer.prepare_step(self.flat_params)
        self._backward(d, update)
        update.apply(self.flat_grads, segments=self.rest_segments)
        self.apply_max_norm()
        return loss
