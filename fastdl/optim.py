"""Optimizers over one flat parameter buffer: one fused kernel call per step.

Each optimizer holds its hyperparameters (PyTorch's torch.optim names and defaults) and
its state buffers, which have the layout of the flat parameter buffer. A network binds
its optimizer in ``compile``; a custom loop can call ``opt.step(params, grads)`` on any
pair of flat float32 buffers (the state is created on the first call).

Weight decay (L2) and L1 apply only to the ranges in ``decay_segments`` — the network
passes its weight matrices, so biases, PReLU slopes and BatchNorm's gamma/beta are not
decayed (PyTorch users get this with parameter groups). ``decay_biases=True`` decays the
whole buffer. ``lr`` may be changed between steps (schedules do that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence, cast

import numpy as np

from fastdl import _device
from fastdl._C import check_optimizer_options
from fastdl._scalars import integer, real

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._C import OptimizerStep
    from fastdl._device import Backend
    from fastdl._typing import Config, DeviceArray

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSProp", "RMSprop", "Adadelta", "Adam", "AdamW", "get", "NAMES"]


#: the largest step count an optimizer takes (the kernels count in a signed 64-bit int)
MAX_STEP = 2 ** 63 - 2


# Hyperparameters are numbers (fastdl._scalars' type rules: finite, within float32's
# range); their ranges and the rules tying them together are the step kernels' own
# (fastdl._C.check_optimizer_options), applied when an optimizer is built or its lr set,
# so a value a step would refuse is refused then, from the one place each rule lives.
def _number(name: str, value: Any) -> float:
    return real(name, value, float32=True)


def _keras_lr(lr: float, learning_rate: float | None, cls: type[Optimizer]) -> float:
    """lr, or Keras's spelling learning_rate= (not both)."""
    if learning_rate is None:
        return lr
    default = cls.__init__.__defaults__[0]  # type: ignore[index]  # the subclass's own default lr
    if lr != default:
        raise TypeError("learning_rate: the Keras spelling of lr; give one of the two, not both")
    return learning_rate


class Optimizer:
    """Base class. Subclasses list their state buffers and implement ``_kernel_step``."""

    name = "optimizer"
    #: the step kernel's rules this optimizer's hyperparameters follow (check_options)
    kind: ClassVar[str | None] = None
    #: the step kernel's name in the backend's kernel namespace
    kernel_name: ClassVar[str]
    #: names of the state buffers, each of the parameters' length
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0, l1: float = 0.0, decay_biases: bool = False) -> None:
        self.lr = lr
        self.weight_decay = _number("weight_decay", weight_decay)
        self.l1 = _number("l1", l1)
        self.decay_biases = bool(decay_biases)
        self.step_count = 0
        self.state: dict[str, DeviceArray] = {}
        self._size: int | None = None
        self._backend: Backend | None = None
        self._segments: npt.NDArray[np.int64] | None = None

    @property
    def lr(self) -> float:
        """The learning rate (may be changed between steps)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        value = _number("lr", value)
        if self.kind is not None:
            check_optimizer_options(self.kind, lr=value)
        self._lr = value

    @property
    def learning_rate(self) -> float:
        """Keras's name for lr."""
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.lr = value

    # -- binding to a parameter layout ---------------------------------------------
    def bind(self, size: int, device: str = "cpu", decay_segments: npt.ArrayLike | None = None) -> Optimizer:
        """Allocates zeroed state buffers for `size` parameters on `device`.

        decay_segments: int64 (S, 2) [start, stop) ranges that get weight decay and L1
        (None: the whole buffer)."""
        backend = _device.get_backend(device)
        self._backend = backend
        self._size = int(size)
        segments = None
        if decay_segments is not None:
            segments = np.ascontiguousarray(decay_segments, dtype=np.int64).reshape(-1, 2)
        self._segments = None if self.decay_biases else segments
        self._kernel = getattr(backend.kernels, self.kernel_name)
        self.state = {name: backend.zeros(self._size) for name in self._active_state()}
        self._init_state()
        self.step_count = 0
        return self

    def _active_state(self) -> tuple[str, ...]:
        return self.state_names

    def _init_state(self) -> None:
        pass

    def step(self, params: DeviceArray, grads: DeviceArray) -> None:
        """One update of `params` in place from `grads` (flat float32 buffers)."""
        self._bind_to(params)
        self.step_count += 1
        self._kernel_step(params, grads)

    def can_prepare_step(self) -> bool:
        """Whether ``prepare_step`` works: fastdl's own optimizers hand out a prepared
        step from their kernel; a subclass that overrides ``_kernel_step`` (a numpy
        optimizer, say) is only ever called with both buffers, so a network steps it in
        a separate pass."""
        return type(self)._kernel_step in _PREPARABLE

    def prepare_step(self, params: DeviceArray) -> OptimizerStep | None:
        """Counts one step and returns it prepared, not applied: a
        ``fastdl.kernels.OptimizerStep`` over `params` (numpy, CPU) that the dense kernels'
        ``update=`` apply to their weight matrices as the gradients are computed, and
        ``.apply(grads, segments=...)`` to the rest. Applying every element once gives
        exactly what ``step`` gives."""
        if type(params) is not np.ndarray and _device.is_device_array(params):
            raise TypeError("prepare_step: the step in the backward pass is CPU only; use step() "
                            "on device buffers")
        if type(self)._kernel_step not in _PREPARABLE:  # can_prepare_step(), inlined: called every step
            raise TypeError(f"prepare_step: {type(self).__name__} overrides _kernel_step, which "
                            "is called with both buffers only; use step()")
        self._bind_to(params)
        self.step_count += 1
        return self._kernel_step(params, None)

    def cancel_prepared_step(self) -> None:
        """Takes back the count of a ``prepare_step`` whose step was never applied (its
        backward pass did not run), so the next step is numbered as if it had not been
        prepared."""
        if self.step_count < 1:
            raise RuntimeError("cancel_prepared_step: no step has been prepared")
        self.step_count -= 1

    def _bind_to(self, params: DeviceArray) -> None:
        if self._size is None or self._size != params.shape[0]:
            device = "cuda" if _device.is_device_array(params) else "cpu"
            self.bind(params.shape[0], device)

    def _kernel_step(self, params: DeviceArray, grads: DeviceArray | None) -> OptimizerStep | None:
        """Calls the step kernel (grads None: returns the prepared step)."""
        raise NotImplementedError

    # -- hyperparameters and state ---------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters by name, as the constructor takes them."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "l1": self.l1,
                "decay_biases": self.decay_biases}

    def get_config(self) -> Config:
        """{"name": ..., and the hyperparameters}: what get() takes back."""
        return {"name": self.name, **self.hyperparameters()}

    def state_dict(self) -> dict[str, Any]:
        """{'state': {'step': n, <buffer>: numpy copy, ...}, 'param_groups': [hyperparameters]}
        (torch.optim's shape, with one group: the flat buffer)."""
        state: dict[str, Any] = {"step": self.step_count}
        for name, buf in self.state.items():
            state[name] = _device.to_host(buf).copy()
        return {"state": state, "param_groups": [self.hyperparameters()]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores hyperparameters and state saved by ``state_dict``; the state buffers
        must have the bound parameters' length (bind first, or let compile do it)."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict: expected a dict with 'state' and 'param_groups' "
                             "(as returned by Optimizer.state_dict())")
        groups = state_dict["param_groups"]
        if len(groups) != 1:
            raise ValueError(f"state_dict: fastdl optimizers have one parameter group, got {len(groups)}")
        hyper = dict(groups[0])
        unknown = set(hyper) - set(self.hyperparameters())
        if unknown:
            raise ValueError(f"state_dict: hyperparameters {sorted(unknown)} do not belong to {self.name}")
        state = dict(state_dict["state"])
        step = integer("step", state.get("step", 0), 0, MAX_STEP)  # checked before anything changes
        arrays = {k: v for k, v in state.items() if k != "step"}
        if arrays:
            if self._size is None:
                raise RuntimeError("load_state_dict: bind the optimizer (model.compile) before loading its state")
            expected = set(self._active_state_for(hyper))
            if set(arrays) != expected:
                raise ValueError(f"state_dict: {self.name} state buffers are {sorted(expected)}, got {sorted(arrays)}")
            for name, arr in arrays.items():
                arr = np.asarray(arr)
                if arr.shape != (self._size,):
                    raise ValueError(f"state_dict: state buffer {name!r} has shape {arr.shape}, "
                                     f"expected ({self._size},) (the parameters' length)")
        for k, v in hyper.items():
            setattr(self, k, v)
        self._validate()
        if self._size is not None:
            backend = cast("Backend", self._backend)
            self.state = {name: backend.zeros(self._size) for name in self._active_state()}
            for name, arr in arrays.items():
                backend.copy_from_host(self.state[name], np.ascontiguousarray(arr, dtype=np.float32))
        self.step_count = step

    def _active_state_for(self, hyper: dict[str, Any]) -> tuple[str, ...]:
        saved = {k: getattr(self, k) for k in hyper}
        try:
            for k, v in hyper.items():
                setattr(self, k, v)
            return self._active_state()
        finally:
            for k, v in saved.items():
                setattr(self, k, v)

    def _validate(self) -> None:
        """Checks the hyperparameters by the step kernel's rules (one place for each)."""
        if self.kind is not None:
            check_optimizer_options(self.kind, **self._kernel_options())

    def _kernel_options(self) -> dict[str, Any]:
        """The hyperparameters as the step kernel names them."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "l1": self.l1}

    # -- pickle and copy.deepcopy ----------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Data only: hyperparameters, the step count and the state buffers as host
        arrays; the device's kernel is looked up again when unpickled."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_kernel", "_backend")}
        state["_device"] = None if self._backend is None else self._backend.name
        state["state"] = {k: _device.to_host(v) for k, v in self.state.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        device = state.pop("_device", None)
        self.__dict__.update(state)
        self._backend = None
        if device is not None:
            backend = self._backend = _device.get_backend(device)
            kernel_name = getattr(self, "kernel_name", None)
            if kernel_name is not None:
                self._kernel = getattr(backend.kernels, kernel_name)
            host = self.state
            self.state = {k: backend.zeros(self._size) for k in host}
            for k, arr in host.items():
                backend.copy_from_host(self.state[k], np.ascontiguousarray(arr, dtype=np.float32))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (PyTorch's formulation: b = mu*b + (1 -
    dampening)*g, the first step b = g; Nesterov uses g + mu*b). ``classic=True`` uses the
    lectures' v = mu*v - lr*g; theta += v (the same for a constant lr)."""

    name = "sgd"
    kind = "sgd"
    kernel_name = "sgd_step"

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, l1: float = 0.0, classic: bool = False, decay_biases: bool = False, *,
                 learning_rate: float | None = None) -> None:
        super().__init__(_keras_lr(lr, learning_rate, type(self)), weight_decay, l1, decay_biases)
        self.momentum = _number("momentum", momentum)
        self.dampening = _number("dampening", dampening)
        self.nesterov = bool(nesterov)
        self.classic = bool(classic)
        self._validate()

    def _kernel_options(self) -> dict[str, Any]:
        return {**super()._kernel_options(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov}

    def _active_state(self) -> tuple[str, ...]:
        return ("momentum_buf",) if self.momentum > 0 else ()

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "classic": self.classic}

    def _kernel_step(self, params: DeviceArray, grads: DeviceArray | None) -> OptimizerStep | None:
        return self._kernel(params, grads, self.state.get("momentum_buf"), lr=self._lr, momentum=self.momentum,
                            dampening=self.dampening, weight_decay=self.weight_decay, nesterov=self.nesterov,
                            first_step=self.step_count == 1, classic=self.classic, l1=self.l1,
                            decay_segments=self._segments)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.) with PyTorch's defaults: each parameter's step is lr divided
    by the root of its summed squared gradients (plus eps)."""

    name = "adagrad"
    kind = "adagrad"
    kernel_name = "adagrad_step"
    state_names = ("sum_sq",)

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, l1: float = 0.0,
                 decay_biases: bool = False, *, learning_rate: float | None = None) -> None:
        super().__init__(_keras_lr(lr, learning_rate, type(self)), weight_decay, l1, decay_biases)
        self.lr_decay = _number("lr_decay", lr_decay)
        # the one rule the step kernel does not hold: the state's starting value
        self.initial_accumulator_value = real("initial_accumulator_value", initial_accumulator_value, 0.0,
                                              float32=True)
        self.eps = _number("eps", eps)
        self._validate()

    def _kernel_options(self) -> dict[str, Any]:
        return {**super()._kernel_options(), "lr_decay": self.lr_decay, "eps": self.eps}

    def _init_state(self) -> None:
        if self.initial_accumulator_value:
            cast("Backend", self._backend).copy_from_host(
                self.state["sum_sq"], np.full(cast(int, self._size), self.initial_accumulator_value, np.float32))

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "lr_decay": self.lr_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def _kernel_step(self, params: DeviceArray, grads: DeviceArray | None) -> OptimizerStep | None:
        return self._kernel(params, grads, self.state["sum_sq"], lr=self._lr, step=self.step_count,
                            lr_decay=self.lr_decay, weight_decay=self.weight_decay, eps=self.eps, l1=self.l1,
                            decay_segments=self._segments)


class RMSProp(Optimizer):
    """RMSprop with PyTorch's defaults: the step is divided by the root of a running mean
    of squared gradients (``alpha`` its decay), with optional momentum and centering."""

    name = "rmsprop"
    kind = "rmsprop"
    kernel_name = "rmsprop_step"

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, l1: float = 0.0, decay_biases: bool = False, *,
                 learning_rate: float | None = None) -> None:
        super().__init__(_keras_lr(lr, learning_rate, type(self)), weight_decay, l1, decay_biases)
        self.alpha = _number("alpha", alpha)
        self.eps = _number("eps", eps)
        self.momentum = _number("momentum", momentum)
        self.centered = bool(centered)
        self._validate()

    def _kernel_options(self) -> dict[str, Any]:
        return {**super()._kernel_options(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum}

    def _active_state(self) -> tuple[str, ...]:
        names = ["square_avg"]
        if self.momentum > 0:
            names.append("momentum_buf")
        if self.centered:
            names.append("grad_avg")
        return tuple(names)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "centered": self.centered}

    def _kernel_step(self, params: DeviceArray, grads: DeviceArray | None) -> OptimizerStep | None:
        s = self.state
        return self._kernel(params, grads, s["square_avg"], lr=self._lr, alpha=self.alpha, eps=self.eps,
                            weight_decay=self.weight_decay, momentum=self.momentum, centered=self.centered,
                            momentum_buf=s.get("momentum_buf"), grad_avg=s.get("grad_avg"), l1=self.l1,
                            decay_segments=self._segments)


RMSprop = RMSProp  # PyTorch's spelling


class Adadelta(Optimizer):
    """Adadelta (Zeiler) with PyTorch's defaults: steps scaled by the ratio of running
    RMS of past updates to running RMS of gradients."""

    name = "adadelta"
    kind = "adadelta"
    kernel_name = "adadelta_step"
    state_names = ("square_avg", "acc_delta")

    def __init__(self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
                 l1: float = 0.0, decay_biases: bool = False, *, learning_rate: float | None = None) -> None:
        super().__init__(_keras_lr(lr, learning_rate, type(self)), weight_decay, l1, decay_biases)
        self.rho = _number("rho", rho)
        self.eps = _number("eps", eps)
        self._validate()

    def _kernel_options(self) -> dict[str, Any]:
        return {**super()._kernel_options(), "rho": self.rho, "eps": self.eps}

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "rho": self.rho, "eps": self.eps}

    def _kernel_step(self, params: DeviceArray, grads: DeviceArray | None) -> OptimizerStep | None:
        return self._kernel(params, grads, self.state["square_avg"], self.state["acc_delta"], lr=self._lr,
                            rho=self.rho, eps=self.eps, weight_decay=self.weight_decay, l1=self.l1,
                            decay_segments=self._segments)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's defaults; weight_decay is coupled L2 (added to the
    gradient). AdamW decouples it."""

    name = "adam"
    kind = "adam"
    kernel_name = "adam_step"
    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, l1: float = 0.0, decay_biases: bool = False, *,
                 learning_rate: float | None = None) -> None:
        super().__init__(_keras_lr(lr, learning_rate, type(self)), weight_decay, l1, decay_biases)
        self.betas = betas
        self.eps = _number("eps", eps)
        self._validate()

    def _kernel_options(self) -> dict[str, Any]:
        return {**super()._kernel_options(), "beta1": self._betas[0], "beta2": self._betas[1], "eps": self.eps}

    @property
    def betas(self) -> tuple[float, float]:
        """(beta1, beta2): the decay rates of the running mean of the gradients and of their squares."""
        return self._betas

    @betas.setter
    def betas(self, value: Sequence[float]) -> None:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
            raise TypeError(f"betas: expected a pair of floats, got {value!r}")
        b1, b2 = (_number("betas", v) for v in value)
        try:
            check_optimizer_options(self.kind, beta1=b1, beta2=b2)
        except ValueError as e:
            raise ValueError(f"betas: {e}") from None
        self._betas = (b1, b2)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "betas": list(self.betas), "eps": self.eps}

    def _kernel_step(self, params: DeviceArray, grads: DeviceArray | None) -> OptimizerStep | None:
        return self._kernel(params, grads, self.state["exp_avg"], self.state["exp_avg_sq"], lr=self._lr,
                            step=self.step_count, beta1=self._betas[0], beta2=self._betas[1], eps=self.eps,
                            weight_decay=self.weight_decay, decoupled=self.decoupled, l1=self.l1,
                            decay_segments=self._segments)


class AdamW(Adam):
    """Adam with decoupled weight decay (theta -= lr * weight_decay * theta), default 1e-2."""

    name = "adamw"
    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, l1: float = 0.0, decay_biases: bool = False, *,
                 learning_rate: float | None = None) -> None:
        super().__init__(lr, betas, eps, weight_decay, l1, decay_biases, learning_rate=learning_rate)


_BY_NAME: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adagrad, RMSProp, Adadelta, Adam, AdamW)}
#: the optimizer names get() takes
NAMES = tuple(_BY_NAME)
# The step kernels that can return a prepared step (grads=None): see can_prepare_step.
_PREPARABLE = frozenset(c._kernel_step for c in _BY_NAME.values())


def get(spec: str | Config | Optimizer, **kwargs: Any) -> Optimizer:
    """An optimizer from a name ("adam", "sgd", ...) with keyword hyperparameters, a config
    dict (``get_config()``) or an Optimizer instance."""
    if isinstance(spec, Optimizer):
        if kwargs:
            raise TypeError("optimizer: keyword hyperparameters apply to an optimizer given by name only")
        return spec
    if isinstance(spec, dict):
        cfg = dict(spec)
        name = cfg.pop("name", None)
        cfg.update(kwargs)
        spec, kwargs = name, cfg
    if isinstance(spec, str):
        cls = _BY_NAME.get(spec.lower())
        if cls is None:
            raise ValueError(f"optimizer: unknown optimizer {spec!r}; expected one of {sorted(_BY_NAME)}")
        return cls(**kwargs)
    raise TypeError(f"optimizer: expected a name or a fastdl.optim.Optimizer, got {type(spec).__name__}")
