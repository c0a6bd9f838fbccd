"""fastdl.Sequential: a feed-forward network over one flat parameter buffer.

All parameters live in one float32 buffer (``model.flat_params``); each layer's
weights and biases are views into it. Gradients (``model.flat_grads``) and the
optimizer's state have the same layout, so an update is one fused kernel call. Biases,
PReLU slopes and BatchNorm's gamma/beta sit outside ``model.decay_segments`` and get no
weight decay or L1.
"""

import math
import time

import numpy as np

from fastdl import _device, callbacks as callbacks_mod, layers as L, losses as losses_mod, optim
from fastdl._C import last_level_cache_bytes
from fastdl._stages import BatchNormStage, DenseStage, DropoutStage, MaxoutStage

__all__ = ["Sequential"]


class NonFiniteLossError(FloatingPointError):
    """fit met a NaN or infinite training loss. epoch and step are 0-based; the message
    gives them 1-based, as the progress display does, with the step's samples (first to
    last, in this epoch's order). history: the epochs completed. loss_text says what the
    loss was when it was not this process's own (another MPI rank's)."""

    def __init__(self, epoch, step, first, last, loss, history, loss_text=None):
        super().__init__(
            f"fit: the training loss is {loss if loss_text is None else loss_text} at epoch {epoch + 1}, "
            f"step {step + 1} (samples {first} to {last} of this epoch's order); this step was not applied, "
            "so the model keeps the parameters of the last finite step. Lower the learning rate, check the "
            "data for NaN/Inf, or pass on_nonfinite_loss='skip' to drop such steps.")
        self.epoch, self.step, self.loss, self.history = epoch, step, loss, history


def _derive_seeds(seed):
    ss = np.random.SeedSequence(seed)
    init_ss, shuffle_ss, dropout_ss = ss.spawn(3)
    dropout_seed = int(dropout_ss.generate_state(1, np.uint64)[0])
    return init_ss, shuffle_ss, dropout_seed


class Sequential:
    """A stack of layers trained with one fused optimizer step.

    layers: fastdl layers and/or activation names, e.g.
    ``[Dense(784, 256, activation="relu"), Dropout(0.5), Dense(256, 10)]``.
    device: "cpu" or "cuda" (the GPU kernels, ``pip install fastdl[cuda]``).
    seed: fixes the initial weights, the shuffling of mini-batches and the dropout
    masks; the same seed gives the same run. None draws one (kept in ``model.seed``).
    input_dim: needed only when no layer states its input size.
    """

    def __init__(self, layers, device="cpu", seed=None, input_dim=None):
        if isinstance(layers, (L.Layer, str)) or not hasattr(layers, "__iter__"):
            raise TypeError("layers: expected a list of fastdl layers / activation names")
        self.layers = [L.get(layer, i) for i, layer in enumerate(layers)]
        if not self.layers:
            raise ValueError("layers: a network needs at least one layer")
        self.device = device.lower() if isinstance(device, str) else device
        self._backend = _device.get_backend(device)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer or None, got {seed!r}")
        self.seed = int(seed)
        init_ss, shuffle_ss, self._dropout_seed = _derive_seeds(self.seed)
        self._shuffle_rng = np.random.default_rng(shuffle_ss)
        self._build(input_dim, np.random.default_rng(init_ss))
        self._step = 0
        self.optimizer = None
        self.loss = None
        self._rest_segments = None  # set by compile: see _plan_step_in_backward
        self._dense_stacks = None  # set by compile: see _dense_stack
        self._step_in_stack = False  # set by compile: the whole step inside the DenseStack call
        self.precision = "fp32"  # set by compile: the GEMMs' arithmetic
        self.metrics = []
        self.stop_training = False
        self.history = None

    # -- building ----------------------------------------------------------------------
    def _build(self, input_dim, rng):
        layers = self.layers
        counts = {}
        for layer in layers:
            if not isinstance(layer, L.Activation):
                kind = type(layer).__name__.lower()
                layer.name = f"{kind}_{counts.get(kind, 0)}"
                counts[kind] = counts.get(kind, 0) + 1
        # the input size: given, or stated by the first layer that has one
        if input_dim is None:
            for layer in layers:
                dim = getattr(layer, "in_features", None) or getattr(layer, "num_features", None)
                if dim is not None:
                    input_dim = dim
                    break
                if not isinstance(layer, (L.Dropout, L.Activation)):
                    break
        if input_dim is None:
            raise ValueError("input_dim: the first Dense/Maxout layer needs its in_features "
                             "(Dense(784, 256)), or pass Sequential(..., input_dim=784)")
        self.input_dim = int(input_dim)

        backend = self._backend
        stages, plan = [], []  # plan: (stage, owning layer, [(spec, activation)])
        dim = self.input_dim
        i = 0
        stream = 0
        while i < len(layers):
            layer = layers[i]
            where = f"layers[{i}] ({type(layer).__name__})"
            if isinstance(layer, (L.Dense, L.Maxout)):
                if layer.in_features is None:
                    layer.in_features = dim
                elif layer.in_features != dim:
                    raise ValueError(f"{where}: in_features={layer.in_features} but the previous layer gives {dim}")
            if isinstance(layer, L.Dense):
                act, alpha = layer.activation, layer.alpha
                j = i + 1
                if j < len(layers) and isinstance(layers[j], L.Activation):
                    if act != "linear":
                        raise ValueError(f"layers[{j}]: an activation after {layer.name}, which already applies "
                                         f"{act!r}")
                    act, alpha = layers[j].activation, layers[j].alpha
                    j += 1
                dropout = None
                if j < len(layers) and isinstance(layers[j], L.Dropout):
                    dropout = layers[j]
                    j += 1
                    stream += 1
                stage = DenseStage(backend, layer, act, alpha, dropout, stream)
                specs = layer.param_specs()
                if act == "prelu" and layer.activation != "prelu":  # PReLU given as its own layer
                    specs.append(L.ParamSpec("alpha", (layer.out_features,),
                                             L.initializers.Constant(L.PRELU_INIT if alpha is None else alpha),
                                             False))
                    if layer._init is None:
                        specs[0].init = L.initializers.default_weight_init("prelu")
                elif layer._init is None and act != layer.activation:
                    specs[0].init = L.initializers.default_weight_init(act)
                dim = layer.out_features
                i = j
            elif isinstance(layer, L.Maxout):
                stage = MaxoutStage(backend, layer)
                specs = layer.param_specs()
                dim = layer.out_features
                i += 1
            elif isinstance(layer, L.BatchNorm):
                if layer.num_features is None:
                    layer.num_features = dim
                elif layer.num_features != dim:
                    raise ValueError(f"{where}: num_features={layer.num_features} but the previous layer gives {dim}")
                stage = BatchNormStage(backend, layer)
                specs = layer.param_specs()
                i += 1
            elif isinstance(layer, L.Dropout):
                stream += 1
                stage = DropoutStage(backend, layer, dim, stream)
                specs = []
                i += 1
            elif isinstance(layer, L.Activation):
                prev = type(layers[i - 1]).__name__ if i else "the input"
                raise ValueError(f"{where}: activation {layer.activation!r} must follow a Dense layer (it runs in "
                                 f"the dense kernel's epilogue), not {prev}; e.g. put it in the Dense layer before "
                                 "the BatchNorm: Dense(..., activation='relu'), BatchNorm(n)")
            else:
                raise TypeError(f"{where}: unsupported layer")
            stages.append(stage)
            plan.append((stage, stage.layer, specs))
        self.output_dim = dim

        # the flat buffers: layer by layer, each layer's parameters in order
        total = sum(spec.size for _, _, specs in plan for spec in specs)
        host = _device.aligned_empty(total)
        offsets, segments = [], []
        pos = 0
        for stage, layer, specs in plan:
            for spec in specs:
                size = spec.size
                host[pos:pos + size] = np.asarray(spec.init(spec.shape, rng), np.float32).reshape(-1)
                offsets.append((stage, layer, spec, pos))
                if spec.decay:
                    if segments and segments[-1][1] == pos:
                        segments[-1][1] = pos + size
                    else:
                        segments.append([pos, pos + size])
                pos += size
        self.flat_params = backend.from_host(host) if backend.name != "cpu" else host
        self.flat_grads = backend.zeros(total)
        self.decay_segments = np.array(segments, np.int64).reshape(-1, 2)
        self._param_index = []  # (name, offset, shape, decay)
        per_stage = {id(s): ({}, {}) for s in stages}
        for stage, layer, spec, off in offsets:
            size = spec.size
            view = self.flat_params[off:off + size].reshape(spec.shape)
            gview = self.flat_grads[off:off + size].reshape(spec.shape)
            per_stage[id(stage)][0][spec.name] = view
            per_stage[id(stage)][1][spec.name] = gview
            self._param_index.append((f"{layer.name}.{spec.name}", off, spec.shape, spec.decay))
        for stage in stages:
            stage.bind(*per_stage[id(stage)], self._dropout_seed)
        # the backward pass starts at the last stage and ends at the first with parameters
        first = next((k for k, s in enumerate(stages) if per_stage[id(s)][0]), len(stages))
        for k, s in enumerate(stages):
            s.need_dx = k > first
        self._stages = stages
        self._loss_grads = {}  # output shape -> the loss gradient's buffer
        self._bwd_stages = stages[first:][::-1]
        self._max_norm_stages = [s for s in stages if s.max_norm is not None]
        self._bn_stages = [s for s in stages if isinstance(s, BatchNormStage)]

    # -- parameters --------------------------------------------------------------------
    @property
    def num_params(self):
        return int(self.flat_params.shape[0])

    def named_parameters(self):
        """[(name, view)], each a view into ``flat_params`` (writing to it changes the model)."""
        return [(name, self.flat_params[off:off + int(np.prod(shape))].reshape(shape))
                for name, off, shape, _ in self._param_index]

    def parameters(self):
        """The parameter arrays, views into the flat buffer, in buffer order."""
        return [view for _, view in self.named_parameters()]

    def get_weights(self):
        """A host copy of everything that defines the function: the flat parameters and
        the BatchNorm running statistics."""
        weights = [_device.to_host(self.flat_params).copy()]
        for s in self._bn_stages:
            weights += [_device.to_host(s.running_mean).copy(), _device.to_host(s.running_var).copy()]
        return weights

    def set_weights(self, weights):
        expected = 1 + 2 * len(self._bn_stages)
        if len(weights) != expected:
            raise ValueError(f"weights: expected {expected} arrays (flat parameters + BatchNorm statistics), "
                             f"got {len(weights)}")
        targets = [self.flat_params]
        for s in self._bn_stages:
            targets += [s.running_mean, s.running_var]
        for k, (dst, src) in enumerate(zip(targets, weights)):
            src = np.asarray(src)
            if src.shape != tuple(dst.shape):
                raise ValueError(f"weights[{k}]: expected shape {tuple(dst.shape)}, got {src.shape}")
            self._backend.copy_from_host(dst, np.ascontiguousarray(src, dtype=np.float32))

    def summary(self, print_fn=print):
        """Prints (and returns) a table of the layers, output shapes and parameter counts."""
        rows = [("Layer", "Kernel call", "Output shape", "Params")]
        for stage in self._stages:
            layer = stage.layer
            if isinstance(stage, DenseStage):
                call = "dense_dropout" if stage.p else "dense"
                desc = f"{layer.name} ({stage.act}" + (f", dropout {stage.p:g})" if stage.p else ")")
            elif isinstance(stage, MaxoutStage):
                call, desc = "dense_maxout", f"{layer.name} ({layer.pieces} pieces)"
            elif isinstance(stage, BatchNormStage):
                call, desc = "batchnorm", layer.name
            else:
                call, desc = "dropout", f"{layer.name} (p={layer.p:g})"
            count = sum(int(np.prod(shape)) for name, _, shape, _ in self._param_index
                        if name.split(".")[0] == layer.name)
            dim = self.output_dim if stage is self._stages[-1] else _stage_dim(stage)
            rows.append((desc, call, f"(None, {dim})", f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        out = [f"Sequential (device={self.device}, input_dim={self.input_dim}, seed={self.seed}, "
               f"precision={self.precision})", line]
        for k, r in enumerate(rows):
            out.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
            if k == 0:
                out.append(line)
        trainable = self.num_params
        out += [line, f"Total params: {trainable:,} ({trainable * 4 / 1024:,.1f} KiB, one flat float32 buffer)"]
        if self._bn_stages:
            out.append(f"Non-trainable (BatchNorm running statistics): {2 * sum(s.layer.num_features for s in self._bn_stages):,}")
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- training ----------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="softmax_cross_entropy", metrics=None, step_in_backward="auto",
                precision="fp32"):
        """Chooses the optimizer (a fastdl.optim.Optimizer or a name with PyTorch's defaults),
        the loss and the metrics (["accuracy"] or none).

        step_in_backward: whether ``train_step`` and ``fit`` apply the optimizer to each
        Dense/Maxout weight matrix inside its backward kernel, tile by tile while the
        gradient is in registers (then the rest of the buffer in one call), instead of in a
        separate pass over the whole buffer. The parameters come out bit for bit the same;
        what changes is memory traffic. True, False, or "auto" (default): on the CPU, when
        those weight matrices hold at least 2**20 parameters and a separate pass's buffers
        (parameters, gradients, optimizer state) take more than half the CPU's last-level
        cache, so that it would stream them from memory; otherwise the in-kernel step only
        adds calls. With it, ``flat_grads`` does not receive those matrices'
        gradients during ``train_step`` (``compute_gradients`` still fills it; ``fit`` steps
        separately when a callback reads gradients). Below 2**20 weights, "auto" gives a
        network that trains as one DenseStack call (Dense layers only, no dropout) the
        whole step inside that call, after its backward: each thread updates the
        parameters it computed with, so the next step finds them in its own core's cache
        (``flat_grads`` is filled as usual). Otherwise, and with False, a separate pass.

        precision: "fp32" (default) or "bf16" (CPU): the Dense and Maxout layers' GEMMs,
        in training and inference, round their operands to bfloat16 and accumulate in
        fp32 (docs/kernels.md, "Precision"); the parameters, gradients, optimizer state,
        activations and loss stay fp32."""
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
        if precision != "fp32" and self._backend.name != "cpu":
            raise ValueError(f"precision: {precision!r} is CPU only (this model is on {self.device!r})")
        self.precision = precision
        for s in self._stages:
            s.precision = {"precision": precision} if self._backend.name == "cpu" else {}
        self.optimizer = optim.get(optimizer)
        self.loss = losses_mod.get(loss).bind(self._backend)
        metrics = list(metrics or [])
        for m in metrics:
            if m not in ("accuracy", "acc"):
                raise ValueError(f"metrics: unknown metric {m!r}; fastdl knows 'accuracy'")
            if isinstance(self.loss, losses_mod.MSE):
                raise ValueError("metrics: 'accuracy' needs a classification loss (softmax_cross_entropy or "
                                 "binary_cross_entropy), not mse")
        self.metrics = ["accuracy" for _ in metrics[:1]]
        self.optimizer.bind(self.num_params, self.device, self.decay_segments)
        self._max_norm_kernel = getattr(self._backend.kernels, "max_norm_") if self._max_norm_stages else None
        self._rest_segments = self._plan_step_in_backward(step_in_backward)
        self._dense_stacks = {} if self._dense_stack_applies() else None
        # The whole step inside the DenseStack call (dense_stack.h): where the step is not
        # taken inside the backward kernels and was not asked to be a separate pass, for a
        # network whose state stays in the cores' caches from step to step (each thread
        # steps what it read; on 784-1024-1024-10 that was 5.2-5.4 vs 4.9-5.0 ms for a
        # separate pass, 2-core Xeon).
        self._step_in_stack = (self._dense_stacks is not None and self._rest_segments is None
                               and step_in_backward is not False
                               and self._updated_weights() < self.STEP_IN_BACKWARD_MIN_WEIGHTS
                               and self.optimizer.can_prepare_step())
        return self

    # Below this many weights in the matrices a backward kernel could update, the separate
    # optimizer pass runs on cache-resident state, and stepping in the backward only adds
    # calls and keeps the backward's two GEMMs from running side by side (784-64x4-10:
    # 131 vs 111 us per step). Above it, "auto" steps in the backward only where the
    # separate pass would stream its buffers from memory: where they take more than half
    # the last-level cache (_separate_pass_leaves_cache). At 784-1024-1024-10 (1.86M weights,
    # 30 MB for Adam) the step in the backward was a tie with a separate pass on a 2-core
    # EPYC (32 MiB L3), up to 14% faster while its memory was busy, and 7-9% slower on a
    # 2-core Xeon (480 MiB L3), where the pass streams from L3 faster than the GEMM's
    # tiles fetch their short rows of state (docs/network.md, Performance notes).
    STEP_IN_BACKWARD_MIN_WEIGHTS = 1 << 20

    def _plan_step_in_backward(self, mode):
        """The flat-buffer ranges the optimizer still applies after a backward pass that
        updated the weight matrices (int64 (S, 2)), or None for a separate step."""
        if mode not in (True, False, "auto"):
            raise ValueError(f"step_in_backward: expected True, False or 'auto', got {mode!r}")
        updated = self._updated_stages()
        if mode is False or not updated:
            return None
        if self._backend.name != "cpu":
            if mode is True:
                raise ValueError("step_in_backward: the step in the backward pass is CPU only "
                                 f"(this model is on {self.device!r})")
            return None
        if not self.optimizer.can_prepare_step():
            if mode is True:
                raise ValueError(f"step_in_backward: {type(self.optimizer).__name__} overrides "
                                 "_kernel_step, so it cannot be applied inside the backward pass; "
                                 "use False or 'auto'")
            return None
        # bf16: the tile unit finishes a weight-gradient tile long before the update has
        # fetched that tile's parameters and state, so the update inside the GEMM waits on
        # memory tile by tile, where a separate pass streams them (docs/benchmarks.md).
        if mode == "auto" and (self.precision == "bf16" or not self._separate_pass_leaves_cache()):
            return None
        offsets = {name: off for name, off, _, _ in self._param_index}
        taken = sorted((offsets[f"{s.layer.name}.w"], s.w.size) for s in updated)
        rest, pos = [], 0
        for off, size in taken:
            if off > pos:
                rest.append((pos, off))
            pos = off + size
        if pos < self.num_params:
            rest.append((pos, self.num_params))
        return np.array(rest, np.int64).reshape(-1, 2)

    def _updated_stages(self):
        """The stages whose backward kernels can update their weight matrices."""
        return [s for s in self._bwd_stages if isinstance(s, (DenseStage, MaxoutStage))]

    def _updated_weights(self):
        return sum(s.w.size for s in self._updated_stages())

    def _separate_pass_leaves_cache(self):
        """Whether a separate optimizer pass over the weight matrices would stream its
        buffers (parameters, gradients, optimizer state) from memory: at least
        STEP_IN_BACKWARD_MIN_WEIGHTS weights, and more bytes than half the CPU's last-level
        cache (the step's weights, activations and GEMM buffers pass through it too), or a
        cache size the C library cannot tell."""
        weights = self._updated_weights()
        if weights < self.STEP_IN_BACKWARD_MIN_WEIGHTS:
            return False
        cache = last_level_cache_bytes()
        return cache <= 0 or 4 * weights * (2 + len(self.optimizer.state)) > cache // 2

    def _dense_stack_applies(self):
        """Whether the forward, loss and backward run as one kernel call (DenseStack): a
        CPU network of Dense layers only, without dropout."""
        return (self._backend.name == "cpu"
                and all(type(s) is DenseStage and not s.p for s in self._stages)
                and type(self.loss) in (losses_mod.SoftmaxCrossEntropy, losses_mod.MSE,
                                        losses_mod.BinaryCrossEntropy))

    def _dense_stack(self, n):
        """The DenseStack over the stages' buffers for batch size n (built on its first
        step, like the buffers themselves)."""
        stack = self._dense_stacks.get(n)
        if stack is None:
            layers = []
            for s in self._stages:
                shape = (n, s.m)
                layers.append({
                    "w": s.w, "b": s.b, "activation": s.act, "alpha": s.alpha,
                    "y": s._kept("y", shape), "z": s._kept("z", shape) if s.needs_z else None,
                    "dx": s._kept("dx", (n, s.w.shape[0])) if s.need_dx else None,
                    "dw": s.gw, "db": s.gb, "dalpha": s.galpha if s.prelu else None})
            out_shape = (n, self.output_dim)
            grad = self._loss_grads.get(out_shape)
            if grad is None:
                grad = self._loss_grads[out_shape] = self._backend.empty(out_shape)
            smoothing = getattr(self.loss, "label_smoothing", 0.0)
            stack = self._dense_stacks[n] = self._backend.kernels.DenseStack(
                layers, loss=self.loss.name, dout=grad, label_smoothing=smoothing, precision=self.precision)
        return stack

    def _dense_stack_step(self, x, y, step_in_backward, finite_only):
        """_forward_backward as one kernel call (DenseStack): a small network's step would
        otherwise spend a fifth of its time crossing into the kernels (docs/network.md)."""
        stack = self._dense_stack(x.shape[0])
        if not step_in_backward:
            loss = stack.train(x, y)
        else:
            update = self.optimizer.prepare_step(self.flat_params)
            # Each w stepped in its backward kernel and the rest after, or (no rest
            # segments: _step_in_stack) the whole step inside the call, after the backward.
            how = {"update": update} if self._rest_segments is not None else {"step": update}
            try:
                loss = stack.train(x, y, backward_if_nonfinite=not finite_only, **how)
            except BaseException:
                self.optimizer.cancel_prepared_step()
                raise
            if finite_only and not math.isfinite(loss):
                self.optimizer.cancel_prepared_step()  # no backward ran, so no step
            elif self._rest_segments is not None:
                update.apply(self.flat_grads, segments=self._rest_segments)
        self._last_output = self._stages[-1]._kept("y", (x.shape[0], self.output_dim))
        return loss

    def _stack_takes(self, x):
        """Whether this batch's forward, loss and backward run as one DenseStack call."""
        return self._dense_stacks is not None and getattr(x, "ndim", 0) == 2 and x.shape[0] > 0

    def _require_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")

    def train_step(self, x, y):
        """One step on one mini-batch: forward, loss, backward, one optimizer update (and
        max-norm). Returns the mean loss. x: float32 (N, input_dim), C-contiguous; y: the
        loss kernel's targets (int labels (N,) or float32 (N, C)). Arrays must already be
        on the model's device (for device="cuda", numpy input is copied per call)."""
        if self.optimizer is None:
            self._require_compiled("train_step")
        if self._rest_segments is not None or (self._step_in_stack and self._stack_takes(x)):
            loss = self._forward_backward(x, y, step_in_backward=True)
        else:
            loss = self._forward_backward(x, y)
            self.optimizer.step(self.flat_params, self.flat_grads)
        self._apply_max_norm()
        return loss

    def compute_gradients(self, x, y):
        """Forward (training behaviour: dropout masks, batch statistics), loss and backward
        on one mini-batch: fills ``flat_grads`` and returns the loss, without updating the
        parameters. With ``apply_gradients`` it splits ``train_step`` for custom loops
        (e.g. averaging ``flat_grads`` across processes in between)."""
        self._require_compiled("compute_gradients")
        return self._forward_backward(x, y)

    def _forward_backward(self, x, y, step_in_backward=False, finite_only=False):
        """Forward, loss and backward; with step_in_backward also the optimizer step (the
        weight matrices inside their backward kernels, the rest after). finite_only: a
        non-finite loss returns before the backward pass (fit's check)."""
        if self._backend.name != "cpu":
            x, y = self._device_batch(x, y)
        self._step += 1
        step = self._step
        if self._stack_takes(x):
            return self._dense_stack_step(x, y, step_in_backward, finite_only)
        h = x
        for stage in self._stages:
            h = stage.forward_train(h, step)
        self._last_output = h
        # The loss gradient goes into a buffer kept per output shape, like the stages'.
        grad = self._loss_grads.get(h.shape)
        if grad is None:
            grad = self._loss_grads[h.shape] = self._backend.empty(h.shape)
        loss, d = self.loss(h, y, out=grad)
        if not step_in_backward:
            for stage in self._bwd_stages:
                d = stage.backward(d)
            return loss
        if finite_only and not math.isfinite(loss):
            return loss
        update = self.optimizer.prepare_step(self.flat_params)
        for stage in self._bwd_stages:
            d = stage.backward(d, update)
        update.apply(self.flat_grads, segments=self._rest_segments)
        return loss

    def apply_gradients(self):
        """One optimizer update of ``flat_params`` from ``flat_grads`` (then max-norm)."""
        self._require_compiled("apply_gradients")
        self.optimizer.step(self.flat_params, self.flat_grads)
        self._apply_max_norm()

    def _apply_max_norm(self):
        if self._max_norm_kernel is not None:
            for stage in self._max_norm_stages:
                self._max_norm_kernel(stage.w, stage.max_norm)

    def _device_batch(self, x, y):
        """Copies a numpy mini-batch into preallocated device buffers (GPU models)."""
        if not isinstance(x, np.ndarray):
            return x, y
        key = (x.shape, y.shape, y.dtype)
        bufs = getattr(self, "_dev_bufs", None)
        if bufs is None:
            bufs = self._dev_bufs = {}
        if key not in bufs:
            bufs[key] = (self._backend.empty(x.shape), self._backend.empty(y.shape, y.dtype))
        dx, dy = bufs[key]
        dx.copy_to_device(np.ascontiguousarray(x, dtype=np.float32))
        dy.copy_to_device(np.ascontiguousarray(y))
        return dx, dy

    def forward(self, x):
        """Inference forward pass of one batch already prepared (float32, on the device);
        returns the stage output buffer (overwritten by the next call)."""
        h = x
        for stage in self._stages:
            h = stage.forward_eval(h)
        return h

    def _prepare_x(self, x, argname="x"):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            if x.ndim >= 2 and int(np.prod(x.shape[1:])) == self.input_dim:
                x = x.reshape(x.shape[0], -1)
            else:
                raise ValueError(f"{argname}: expected an array of shape (N, {self.input_dim}), got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise TypeError(f"{argname}: expected numeric data, got dtype {x.dtype}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def predict(self, x, batch_size=256):
        """The network's outputs for x (logits for the cross-entropy losses), in batches."""
        x = self._prepare_x(x)
        batch_size = _positive("batch_size", batch_size)
        out = np.empty((x.shape[0], self.output_dim), np.float32)
        gpu = self._backend.name != "cpu"
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size]
            if gpu:
                xb = self._backend.from_host(xb)
            out[s:s + batch_size] = _device.to_host(self.forward(xb))
        return out

    __call__ = predict

    def predict_proba(self, x, batch_size=256):
        """Softmax (cross-entropy) or sigmoid (binary cross-entropy) of the outputs."""
        self._require_compiled("predict_proba")
        z = self.predict(x, batch_size).astype(np.float64)
        if isinstance(self.loss, losses_mod.SoftmaxCrossEntropy):
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
        elif isinstance(self.loss, losses_mod.BinaryCrossEntropy):
            z = 1.0 / (1.0 + np.exp(-z))
        return z.astype(np.float32)

    def _correct(self, out, y):
        """Number of correct predictions (summed over elements for binary outputs)."""
        if isinstance(self.loss, losses_mod.BinaryCrossEntropy):
            return float(np.count_nonzero((out > 0) == (y > 0.5))) / out.shape[1]
        pred = out.argmax(axis=1)
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        return float(np.count_nonzero(pred == labels))

    def evaluate(self, x, y, batch_size=256, verbose=0, return_dict=False):
        """Mean loss (and metrics) over (x, y) with inference behaviour (no dropout,
        BatchNorm running statistics). Returns the loss, or [loss, accuracy] when compiled
        with metrics (Keras' convention); a dict with return_dict=True."""
        self._require_compiled("evaluate")
        logs = self._evaluate(self._prepare_x(x), self.loss.prepare_targets(y, self.output_dim), batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    def _evaluate(self, x, y, batch_size):
        batch_size = _positive("batch_size", batch_size)
        n = x.shape[0]
        if n == 0:
            raise ValueError("x: no samples to evaluate")
        gpu = self._backend.name != "cpu"
        total_loss = 0.0
        correct = 0.0
        for s in range(0, n, batch_size):
            xb, yb = x[s:s + batch_size], y[s:s + batch_size]
            if gpu:
                xd, yd = self._backend.from_host(xb), self._backend.from_host(yb)
            else:
                xd, yd = xb, yb
            out = self.forward(xd)
            loss, _ = self.loss(out, yd)
            total_loss += loss * xb.shape[0]
            if self.metrics:
                correct += self._correct(_device.to_host(out), yb)
        logs = {"loss": total_loss / n}
        if self.metrics:
            logs["accuracy"] = correct / n
        return logs

    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0, shuffle=True,
            callbacks=None, verbose="auto", initial_epoch=0, augment=None, distributed=None,
            on_nonfinite_loss="raise"):
        """Trains for `epochs` passes over (x, y); returns a History.

        validation_split takes the *last* fraction of x/y (before any shuffling) as
        validation data, as Keras does — shuffle first if the data is sorted.
        Mini-batches are reshuffled every epoch from the model's seed. augment: a list of
        fastdl.augment transforms applied to each training mini-batch. distributed="mpi":
        data-parallel training when started under mpirun (fastdl.distributed).
        verbose: 0 silent, 1 progress bar (on a terminal; one line per epoch otherwise),
        2 one line per epoch, "auto" (1 on a terminal, 2 otherwise).
        on_nonfinite_loss: what a NaN or infinite mini-batch loss does. "raise" (default)
        stops with NonFiniteLossError naming the epoch and step; "skip" drops that step and
        goes on (the count is in the epoch's logs as "skipped_steps"). Either way the step
        changes nothing: its update is not applied and batch-norm running statistics are
        put back, so the model keeps the parameters of the last finite step."""
        if on_nonfinite_loss not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite_loss: expected 'raise' or 'skip', got {on_nonfinite_loss!r}")
        if distributed is not None:
            if distributed != "mpi":
                raise ValueError(f"distributed: expected None or 'mpi', got {distributed!r}")
            if augment is not None:
                raise ValueError("augment: not supported with distributed='mpi' yet")
            from fastdl import distributed as _dist  # data-parallel over MPI (docs/distributed.md)

            return _dist.fit(self, x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                             validation_split=validation_split, shuffle=shuffle, callbacks=callbacks,
                             verbose=verbose, initial_epoch=initial_epoch, on_nonfinite_loss=on_nonfinite_loss)
        self._require_compiled("fit")
        epochs = _nonneg("epochs", epochs)
        batch_size = _positive("batch_size", batch_size)
        initial_epoch = _nonneg("initial_epoch", initial_epoch)
        x, y, val = self._prepare_fit_data(x, y, validation_data, validation_split)
        n = x.shape[0]
        augment = list(augment or [])

        history = callbacks_mod.History()
        cbs = callbacks_mod.CallbackList(callbacks, model=self, verbose=verbose, epochs=epochs,
                                         steps=(n + batch_size - 1) // batch_size, history=history)
        self.stop_training = False
        self.history = history
        self._epoch_samples = n
        batch_bufs = {}
        gpu = self._backend.name != "cpu"
        # A callback that reads flat_grads after each batch needs the separate step.
        # (The step inside a DenseStack call fills flat_grads as a separate step does.)
        step_in_backward = (self._rest_segments is not None and not any(
            getattr(c, "reads_gradients", False) for c in cbs.callbacks)) or (
            self._step_in_stack and self._stack_takes(x[:1]))
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:
                break
            cbs.on_epoch_begin(epoch)
            t0 = time.perf_counter()
            order = self._shuffle_rng.permutation(n) if shuffle else None
            seen = 0
            skipped = 0
            loss_sum = 0.0
            correct = 0.0
            for b, s in enumerate(range(0, n, batch_size)):
                e = min(s + batch_size, n)
                if order is None and not augment:
                    xb, yb = x[s:e], y[s:e]
                else:
                    m = e - s
                    bufs = batch_bufs.get(m)
                    if bufs is None:
                        bufs = batch_bufs[m] = (np.empty((m,) + x.shape[1:], x.dtype),
                                                np.empty((m,) + y.shape[1:], y.dtype))
                    xb, yb = bufs
                    if order is None:
                        np.copyto(xb, x[s:e])
                        np.copyto(yb, y[s:e])
                    else:
                        idx = order[s:e]
                        np.take(x, idx, axis=0, out=xb)
                        np.take(y, idx, axis=0, out=yb)
                    for t in augment:
                        t(xb, self._shuffle_rng)
                for st in self._bn_stages:
                    st.keep_running_stats()
                if step_in_backward:
                    loss = self._forward_backward(xb, yb, step_in_backward=True, finite_only=True)
                else:
                    loss = self.compute_gradients(xb, yb)
                if not math.isfinite(loss):
                    for st in self._bn_stages:
                        st.restore_running_stats()
                    if on_nonfinite_loss == "skip":
                        skipped += 1
                        continue
                    cbs.on_train_end()
                    raise NonFiniteLossError(epoch, b, s, e - 1, loss, history)
                if step_in_backward:
                    self._apply_max_norm()
                else:
                    self.apply_gradients()
                m = e - s
                seen += m
                loss_sum += loss * m
                logs = {"loss": loss_sum / seen}
                if self.metrics:
                    out = self._last_output if not gpu else _device.to_host(self._last_output)
                    correct += self._correct(out, yb)
                    logs["accuracy"] = correct / seen
                cbs.on_train_batch_end(b, logs)
            if seen == 0:  # every step skipped
                logs = {"loss": float("nan")}
                if self.metrics:
                    logs["accuracy"] = float("nan")
            if on_nonfinite_loss == "skip":
                logs["skipped_steps"] = skipped
            if val is not None:
                vlogs = self._evaluate(val[0], val[1], max(batch_size, 256))
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            logs["lr"] = self.optimizer.lr
            logs["time"] = time.perf_counter() - t0
            cbs.on_epoch_end(epoch, logs)
        cbs.on_train_end()
        return history

    def _prepare_fit_data(self, x, y, validation_data, validation_split):
        """fit's data arguments, checked and converted once: (x, y, (x_val, y_val) or None)."""
        x = self._prepare_x(x)
        y = self.loss.prepare_targets(y, self.output_dim)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"y: expected {x.shape[0]} targets (one per sample of x), got {y.shape[0]}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split: expected a fraction in [0, 1), got {validation_split}")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data: expected a tuple (x_val, y_val)")
            xv = self._prepare_x(validation_data[0], "validation_data[0]")
            yv = self.loss.prepare_targets(validation_data[1], self.output_dim, "validation_data[1]")
            if xv.shape[0] != yv.shape[0]:
                raise ValueError("validation_data: x_val and y_val have different lengths")
            val = (xv, yv)
        elif validation_split:
            split_at = int(np.floor(x.shape[0] * (1.0 - validation_split)))
            if split_at == 0 or split_at == x.shape[0]:
                raise ValueError(f"validation_split: {validation_split} of {x.shape[0]} samples leaves no training "
                                 "or no validation data")
            val = (x[split_at:], y[split_at:])
            x, y = x[:split_at], y[:split_at]
        if x.shape[0] == 0:
            raise ValueError("x: no training samples")
        return x, y, val

    # -- persistence -------------------------------------------------------------------
    def get_config(self):
        return {"layers": [layer.get_config() for layer in self.layers], "input_dim": self.input_dim,
                "seed": self.seed}

    def save(self, path):
        """Writes architecture, weights, optimizer and training state to one file,
        atomically: a crash mid-save leaves any previous file at `path` intact."""
        from fastdl import serialization

        serialization.save(self, path)


def _stage_dim(stage):
    layer = stage.layer
    if isinstance(stage, (DenseStage, MaxoutStage)):
        return layer.out_features
    if isinstance(stage, BatchNormStage):
        return layer.num_features
    return stage.m


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _nonneg(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)
