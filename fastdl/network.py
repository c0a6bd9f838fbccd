"""fastdl.network.Network: a feed-forward network over one flat parameter buffer.

The model without its training loop: layers, the flat buffers, compile (optimizer,
loss, metrics, the step plan), one step at a time (``train_step``,
``compute_gradients`` / ``apply_gradients``), inference batches and the state a
trainer or a data-parallel strategy needs. ``fastdl.Sequential`` adds the loops (``fit``,
``evaluate``, ``predict``: fastdl.training) and persistence on top.

All parameters live in one float32 buffer (``flat_params``); each layer's weights and
biases are views into it. Gradients (``flat_grads``) and the optimizer's state have the
same layout, so an update is one fused kernel call. Biases, PReLU slopes and
BatchNorm's gamma/beta sit outside ``decay_segments`` and get no weight decay or L1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

import numpy as np

from fastdl import _device, _graph, _signals, layers as L, losses as losses_mod, optim, outputs
from fastdl import step_plan as plans
from fastdl._batches import BatchSizes
from fastdl.inputs import as_sample_weight, prepare_inputs
from fastdl.metrics import get_metrics
from fastdl.state import NetworkState, _check_seed

_FLOAT32 = np.dtype(np.float32)

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Self

    from fastdl._typing import AnyArray, Config, DeviceArray, FloatArray

__all__ = ["Network", "NotBuiltError"]

#: batch sizes whose buffers a network keeps at once; the least recently used one's go
#: first (a training run uses two or three: the batch, a short last batch, evaluation's)
MAX_KEPT_BATCH_SIZES = 8


class NotBuiltError(ValueError, AttributeError):
    """The network's input width is not known yet, so it has no parameters (an
    AttributeError too: ``hasattr(model, "flat_params")`` is False until it is built)."""


def _derive_seeds(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence, int]:
    ss = np.random.SeedSequence(seed)
    init_ss, shuffle_ss, dropout_ss = ss.spawn(3)
    return init_ss, shuffle_ss, int(dropout_ss.generate_state(1, np.uint64)[0])


class Network(NetworkState):
    """A stack of layers trained with one fused optimizer step (see fastdl.Sequential).

    layers: fastdl layers and/or activation names. device: "cpu" or "cuda". seed: fixes
    the initial weights, the shuffling of mini-batches and the dropout masks (None
    draws one, kept in ``seed``). input_dim: the input width when no layer states it
    (otherwise the network is built from the first data it sees, or ``build(input_dim)``).
    """

    def __init__(self, layers: Iterable[L.Layer | str] | None = None, device: str = "cpu", seed: int | None = None,
                 input_dim: int | None = None) -> None:
        if layers is None:
            layers = []
        if isinstance(layers, (L.Layer, str)) or not hasattr(layers, "__iter__"):
            raise TypeError("layers: expected a list of fastdl layers / activation names")
        self.layers = [L.get(layer, i) for i, layer in enumerate(layers)]
        self.device = device.lower() if isinstance(device, str) else device
        self._backend = _device.get_backend(device)
        self.seed = _check_seed(seed)
        init_ss, shuffle_ss, self._dropout_seed = _derive_seeds(self.seed)
        self._init_ss = init_ss
        #: the generator that orders fit's mini-batches (and draws augmentations)
        self.shuffle_rng = np.random.default_rng(shuffle_ss)
        self._graph = None
        self._step = 0
        self.optimizer = None
        #: the loss, set by compile
        self.loss: losses_mod.Loss | None = None
        self.metrics: list[str] = []
        self.weighted_metrics: list[str] = []
        self._optimizer_step = "auto"
        self.precision = "fp32"  # set by compile: the GEMMs' arithmetic
        self.step_plan: plans.StepPlan | None = None
        self._stepper: plans.Stepper | None = None
        self._sizes = BatchSizes(MAX_KEPT_BATCH_SIZES, self._release_rows)
        self._output_activation: str | None = None
        self._separate_stepper: tuple[plans.Stepper | None, plans.Stepper] | None = None
        self._last_stepper: plans.Stepper | None = None
        self.stop_training = False
        #: the History of the last fit (Keras's model.history), set by the trainer
        self.history: Any = None
        if input_dim is not None:
            self.build(input_dim)
        elif self.layers and _graph.input_dim_of(self.layers) is not None:
            self.build()

    # -- building ----------------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether the parameters exist (the input width is known)."""
        return self._graph is not None

    def build(self, input_dim: int | None = None) -> Self:
        """Allocates and initialises the parameters for inputs of width `input_dim`
        (default: what the first layer states). Building twice keeps the first build."""
        if self._graph is not None:
            return self
        if not self.layers:
            raise ValueError("layers: a network needs at least one layer")
        if input_dim is None:
            input_dim = _graph.input_dim_of(self.layers)
        if input_dim is None:
            raise NotBuiltError("input_dim: the first Dense/Maxout layer needs its in_features (Dense(784, 256)), "
                                "or pass Sequential(..., input_dim=784), call model.build(784), or give fit or "
                                "predict data to build from")
        if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
            raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
        self._graph = _graph.build(self.layers, self._backend, int(input_dim), np.random.default_rng(self._init_ss),
                                   self._dropout_seed)
        if self.optimizer is not None:
            self._bind_training()
        return self

    def _require_built(self, what: str) -> _graph.Graph:
        if self._graph is None:
            try:
                self.build()
            except NotBuiltError:
                raise NotBuiltError(f"{what}: the model is not built yet (its input size is unknown): pass "
                                    "input_dim=..., give the first layer its in_features, call model.build(n), "
                                    "or fit/predict data first") from None
        return cast(_graph.Graph, self._graph)  # build() made it or raised

    def _build_from(self, x: Any) -> None:
        """Builds from a batch's width where no layer states the input size."""
        if self._graph is None:
            width = int(np.prod(np.shape(x)[1:])) if np.ndim(x) >= 2 else None
            self.build(width)

    @property
    def input_dim(self) -> int | None:
        """The input width, or None while the network is not built."""
        return None if self._graph is None else self._graph.input_dim

    @property
    def output_dim(self) -> int | None:
        """The output width (the last layer's units), or None while the network is not built."""
        return None if self._graph is None else self._graph.output_dim

    # -- compile --------------------------------------------------------------------------
    def compile(self, optimizer: str | Config | optim.Optimizer = "adam",
                loss: str | Config | losses_mod.Loss = "softmax_cross_entropy", metrics: Iterable[str] | None = None,
                weighted_metrics: Iterable[str] | None = None, optimizer_step: str = "auto",
                step_in_backward: bool | str | None = None, precision: str = "fp32") -> Self:
        """Chooses the optimizer (a fastdl.optim.Optimizer or a name with PyTorch's
        defaults), the loss and the metrics (["accuracy"]; ``weighted_metrics`` are
        weighted by fit's sample_weight/class_weight, as in Keras).

        optimizer_step: where the optimizer update runs -- "separate", "in_backward",
        "in_stack" or "auto" (default; see fastdl.step_plan and ``model.step_plan``).
        Every choice gives the same parameters bit for bit. step_in_backward is its
        former name (True: "in_backward", False: "separate").

        precision: "fp32" (default) or "bf16" (CPU): the Dense and Maxout layers' GEMMs,
        in training and inference, round their operands to bfloat16 and accumulate in
        fp32 on the CPU's bf16 units (docs/kernels.md, "precision="); the parameters,
        gradients, optimizer state, activations and loss stay fp32."""
        if step_in_backward is not None:
            import warnings

            warnings.warn("compile(step_in_backward=...) is now compile(optimizer_step=...): True is "
                          "'in_backward', False 'separate', 'auto' 'auto'", DeprecationWarning, stacklevel=2)
            if step_in_backward not in (True, False, "auto"):
                raise ValueError(f"step_in_backward: expected True, False or 'auto', got {step_in_backward!r}")
            optimizer_step = {True: "in_backward", False: "separate", "auto": "auto"}[step_in_backward]
        if optimizer_step not in plans.OPTIMIZER_STEPS:
            raise ValueError(f"optimizer_step: expected one of {plans.OPTIMIZER_STEPS}, got {optimizer_step!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
        if precision != "fp32" and self._backend.name != "cpu":
            raise ValueError(f"precision: {precision!r} is CPU only (this model is on {self.device!r})")
        opt = optim.get(optimizer)
        lossf = losses_mod.get(loss)
        metrics, weighted = get_metrics(metrics, "metrics", lossf), get_metrics(weighted_metrics,
                                                                                "weighted_metrics", lossf)
        self.optimizer, self.loss = opt, lossf.bind(self._backend)
        self.metrics, self.weighted_metrics = metrics, weighted
        self._optimizer_step = optimizer_step
        self.precision = precision
        if self._graph is not None:
            self._bind_training()
        return self

    @property
    def compiled(self) -> bool:
        """Whether compile has set the optimizer and the loss."""
        return self.optimizer is not None and self.loss is not None

    def _bind_training(self) -> None:
        """The compile steps that need the parameters: bind the optimizer to the buffer,
        fuse an output activation into the loss (fastdl.outputs), choose the step plan."""
        # called once built and compiled
        g, loss, optimizer = cast(_graph.Graph, self._graph), cast(losses_mod.Loss, self.loss), \
            cast(optim.Optimizer, self.optimizer)
        self._output_activation = outputs.fuse_into_loss(g, loss)
        for stage in g.stages:
            stage.precision = {"precision": self.precision} if self._backend.name == "cpu" else {}
        optimizer.bind(self.num_params, self.device, g.decay_segments)
        self._set_plan(plans.choose(self._optimizer_step, g.stages, g.bwd_stages, loss, optimizer,
                                    self._backend.name, self.precision))

    def _set_plan(self, plan: plans.StepPlan) -> None:
        self.step_plan = plan
        self._stepper = plans.Stepper(plan, self._graph, self.loss, self.optimizer, self._backend, self.precision)

    def _require_compiled(self, what: str, build: bool = True) -> plans.Stepper:
        if not self.compiled:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")
        if build:
            self._require_built(what)
        return self._stepper  # type: ignore[return-value]  # built and compiled: bound

    @property
    def _compiled_loss(self) -> losses_mod.Loss:
        return cast(losses_mod.Loss, self.loss)  # compile sets it

    @property
    def output_activation(self) -> str | None:
        """What the network applies to its outputs outside the kernels: "softmax",
        "sigmoid" (each fused into the loss in training; fastdl.outputs) or None."""
        if self._graph is None:
            return None
        return self._graph.output_activation or self._output_activation

    # -- inputs ------------------------------------------------------------------------------
    def prepare_inputs(self, x: npt.ArrayLike, argname: str = "x") -> FloatArray:
        """x as the kernels take it: float32 (N, input_dim), C-contiguous (a copy only
        when it is not one). Images (N, 28, 28) are flattened."""
        self._build_from(x)
        return prepare_inputs(x, self.input_dim, argname)

    def prepare_targets(self, y: npt.ArrayLike, argname: str = "y") -> AnyArray:
        """y as the loss kernel takes it (int64 labels or float32 (N, output_dim) targets):
        a copy only when it is not one already."""
        self._require_compiled("prepare_targets")
        return self._compiled_loss.prepare_targets(y, self._require_built("prepare_targets").output_dim, argname)

    def _batch(self, x: Any, y: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
        """A training/evaluation batch as the kernels take it (no copy for arrays that
        already are), on the model's device."""
        # Every step comes through here: the usual case (arrays that already are what the
        # kernels take) costs a few attribute checks.
        g = self._graph
        if not (g is not None and type(x) is np.ndarray and x.dtype == _FLOAT32 and x.ndim == 2
                and x.shape[1] == g.input_dim and x.flags.c_contiguous) and not _device.is_device_array(x):
            x = self.prepare_inputs(x)
        if g is None:
            g = self._require_built("batch")
        loss: Any = self.loss
        if not loss.is_prepared(y, g.output_dim) and not _device.is_device_array(y):
            y = self.prepare_targets(y)
        w = None if sample_weight is None else as_sample_weight(sample_weight, x.shape[0])
        if self._backend.name != "cpu":
            x, y, w = self._device_batch(x, y, w)
        self._sizes.use(x.shape[0])
        return x, y, w

    def _use_rows(self, n: int) -> None:
        self._sizes.use(n)

    def _release_rows(self, rows: int) -> None:
        for s in self._require_built("release_rows").stages:
            s.release_rows(rows)
        if self._stepper is not None:
            self._stepper.release_rows(rows)

    def _device_batch(self, x: Any, y: Any, w: Any) -> tuple[Any, Any, Any]:
        return self._sizes.to_device(self._backend, x, y, w)

    # -- one step ----------------------------------------------------------------------------
    def train_step(self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None) -> float:
        """One step on one mini-batch: forward, loss, backward, one optimizer update (and
        max-norm), as ``step_plan`` says. Returns the mean loss. Arrays that already are
        float32 (N, input_dim) C-contiguous (and int64 labels or float32 targets) are used
        as they are; anything else is converted first. The update is applied whatever the
        loss (``step_if_finite`` refuses non-finite ones)."""
        # A stepper exists once the model is built and compiled.
        stepper = self._stepper or self._require_compiled("train_step")
        x, y, w = self._batch(x, y, sample_weight)
        counted, done = _signals.enter(), False  # Ctrl-C waits for the step's end (fastdl/_signals.py)
        try:
            loss = stepper.step(x, y, w, self._step + 1, finite_only=False)
            self._step += 1
            self._last_stepper = stepper
            done = True
        finally:
            _signals.leave(counted, raise_pending=done)
        return loss

    def step_if_finite(self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None,
                       fill_gradients: bool = False) -> float:
        """``train_step`` that applies nothing when the loss is NaN or infinite: the
        parameters, the optimizer state and the BatchNorm running statistics stay as they
        were (the step still counts, for the dropout masks). Returns the loss.
        fill_gradients: take the step with a separate optimizer pass when the plan would
        not leave every gradient in ``flat_grads`` (a callback reads them)."""
        stepper = self._require_compiled("step_if_finite")
        x, y, w = self._batch(x, y, sample_weight)
        if fill_gradients and self.step_plan is not None and not self.step_plan.fills_gradients:
            stepper = self._gradient_stepper()
        counted, done = _signals.enter(), False
        try:
            loss = stepper.step(x, y, w, self._step + 1, finite_only=True)
            self._step += 1
            self._last_stepper = stepper
            done = True
        finally:
            _signals.leave(counted, raise_pending=done)
        return loss

    def _gradient_stepper(self) -> plans.Stepper:
        if self._separate_stepper is None or self._separate_stepper[0] is not self._stepper:
            plan = cast(plans.StepPlan, self.step_plan)  # compiled
            sep = plans.StepPlan(plan.execution, "separate", "a callback reads flat_grads")
            self._separate_stepper = (self._stepper, plans.Stepper(sep, self._graph, self.loss, self.optimizer,
                                                                   self._backend, self.precision))
        return self._separate_stepper[1]

    def compute_gradients(self, x: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None,
                          keep_state: bool = False) -> float:
        """Forward (training behaviour: dropout masks, batch statistics), loss and backward
        on one mini-batch: fills ``flat_grads`` and returns the loss, without updating the
        parameters. With ``apply_gradients`` it splits ``train_step`` for custom loops
        (e.g. averaging ``flat_grads`` across processes in between).
        keep_state: leave the step counter and the BatchNorm running statistics as they
        were (a measurement, not a training step)."""
        stepper = self._require_compiled("compute_gradients")
        x, y, w = self._batch(x, y, sample_weight)
        if keep_state:
            kept = self.get_flat_weights()
            try:
                return stepper.gradients(x, y, w, self._step + 1)
            finally:
                self.set_flat_weights(kept)
        for st in self._require_built("compute_gradients").bn_stages:
            st.keep_running_stats()
        loss = stepper.gradients(x, y, w, self._step + 1)
        self._step += 1
        self._last_stepper = stepper
        return loss

    def revert_statistics(self) -> None:
        """Puts the BatchNorm running statistics back as they were before the last
        ``compute_gradients`` (a step whose gradients are not applied)."""
        for st in self._require_built("revert_statistics").bn_stages:
            st.restore_running_stats()

    def apply_gradients(self) -> None:
        """One optimizer update of ``flat_params`` from ``flat_grads`` (then max-norm)."""
        self._require_compiled("apply_gradients").apply()

    @property
    def last_output(self) -> DeviceArray | None:
        """The outputs (logits) of the last training batch, on the model's device."""
        return None if self._last_stepper is None else self._last_stepper.last_output

    # -- inference ----------------------------------------------------------------------------
    def forward(self, x: DeviceArray) -> DeviceArray:
        """Inference forward pass of one batch already prepared (float32, on the device);
        returns the stage output buffer (overwritten by the next call): logits, before
        the output activation."""
        h = x
        for stage in self._graph.stages:  # type: ignore[union-attr]  # the hot path: built by its callers
            h = stage.forward_eval(h)
        return h

    def predict_batch(self, x: FloatArray) -> FloatArray:
        """The outputs of one prepared host batch on the host, with the output activation
        (softmax/sigmoid) applied; without one, on the CPU, the stage's own buffer
        (overwritten by the next call)."""
        self._use_rows(x.shape[0])
        xb = self._backend.from_host(x) if self._backend.name != "cpu" else x
        out = _device.to_host(self.forward(xb))
        return outputs.apply(out, self.output_activation)

    def test_batch(self, x: FloatArray, y: AnyArray, w: FloatArray | None = None) -> tuple[float, DeviceArray]:
        """(loss, logits) of one prepared host batch, inference behaviour; the logits are
        the stage's buffer on the model's device (overwritten by the next call)."""
        self._use_rows(x.shape[0])
        if self._backend.name != "cpu":
            x, y, w = self._device_batch(x, y, w)
        out = self.forward(x)
        lossf = self._compiled_loss
        loss = lossf(out, y) if w is None else lossf(out, y, sample_weight=w)
        return loss[0], out

    # -- description ----------------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], Any] | None = print) -> str:
        """Prints (and returns) a table of the layers, output shapes and parameter counts,
        and the training step's plan."""
        from fastdl._summary import summary_text

        text = summary_text(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        where = f"input_dim={self.input_dim}, " if self.built else ""
        state = ""
        if self.compiled:
            state = f", compiled: {type(self.optimizer).__name__}, {self._compiled_loss.name}"
            if self.step_plan is not None:
                state += f", optimizer_step={self.step_plan.optimizer_step!r}"
        return f"{type(self).__name__}([{layers}], {where}device={self.device!r}, seed={self.seed}{state})"

    def get_config(self) -> Config:
        """The network as plain data: its layers' configs, input_dim and seed."""
        return {"layers": [layer.get_config() for layer in self.layers],
                "input_dim": self.input_dim if self.built else None, "seed": self.seed}

