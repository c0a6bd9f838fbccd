"""What a network holds -- its parameters, BatchNorm statistics and training counters --
and the ways to read and set it. fastdl.network.Network inherits these; the trainer,
data-parallel strategies, callbacks and persistence use only them."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence

import numpy as np

from fastdl import _device

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._device import Backend
    from fastdl._graph import Graph, ParamSlot
    from fastdl._typing import DeviceArray, FloatArray
    from fastdl.optim import Optimizer

__all__ = ["NetworkState", "IncompatibleKeys"]


class IncompatibleKeys(NamedTuple):
    """What load_state_dict returns (PyTorch's name and fields): the model's keys the
    state dict lacked and its keys the model does not have."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _host_copy(a: DeviceArray) -> FloatArray:
    return a.copy() if isinstance(a, np.ndarray) else _device.to_host(a)


def _as_float32(value: Any, argname: str) -> FloatArray:
    """A C-contiguous float32 host array of value (numpy, lists, CPU torch tensors)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    elif _device.is_device_array(value):
        value = _device.to_host(value)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{argname}: expected an array, got {type(value).__name__} ({e})") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{argname}: expected a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_seed(seed: int | None) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2 ** 63))  # type: ignore[operator]  # entropy is an int here
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer or None, got {seed!r}")
    return int(seed)


class NetworkState:
    """Mixin: the state of a built network (``self._graph``, ``self._step``, seeds)."""

    # What the network (fastdl.network.Network) provides.
    _graph: Graph | None
    _backend: Backend
    _step: int
    _dropout_seed: int
    seed: int
    shuffle_rng: np.random.Generator
    optimizer: Optimizer | None

    if TYPE_CHECKING:
        def _require_built(self, what: str) -> Graph: ...

    @property
    def flat_params(self) -> DeviceArray:
        """Every parameter, one float32 buffer (each layer's arrays are views into it)."""
        return self._require_built("flat_params").flat_params

    @property
    def flat_grads(self) -> DeviceArray:
        """The gradients, in flat_params' layout."""
        return self._require_built("flat_grads").flat_grads

    @property
    def decay_segments(self) -> npt.NDArray[np.int64]:
        """int64 (S, 2) [start, stop) ranges of the weight matrices: weight decay and L1
        apply there only."""
        return self._require_built("decay_segments").decay_segments

    @property
    def param_layout(self) -> tuple[ParamSlot, ...]:
        """(name, offset, shape, size, decay) of every parameter array, in buffer order."""
        return self._require_built("param_layout").param_layout

    # -- parameters ----------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        """The number of parameters: the length of ``flat_params``."""
        return int(self._require_built("num_params").flat_params.shape[0])

    def count_params(self) -> int:
        """The number of parameters (Keras's name): the length of ``flat_params``."""
        return self.num_params

    def named_parameters(self) -> list[tuple[str, DeviceArray]]:
        """[(name, view)], each a view into ``flat_params`` (writing to it changes the model)."""
        flat = self._require_built("named_parameters").flat_params
        return [(s.name, flat[s.offset:s.offset + s.size].reshape(s.shape)) for s in self.param_layout]

    def parameters(self) -> list[DeviceArray]:
        """The parameter arrays, views into the flat buffer, in buffer order."""
        return [view for _, view in self.named_parameters()]

    def batchnorm_statistics(self) -> list[tuple[DeviceArray, DeviceArray]]:
        """[(running_mean, running_var)] of each BatchNorm layer, in layer order (the
        arrays themselves, on the model's device)."""
        return [(s.running_mean, s.running_var) for s in self._require_built("batchnorm_statistics").bn_stages]

    # -- named weights -------------------------------------------------------------------
    def _named_arrays(self, what: str) -> list[tuple[str, DeviceArray]]:
        """[(name, array)] of every parameter and BatchNorm running statistic, layer by
        layer in layer order: each layer's parameters in buffer order ("dense_0.w",
        "dense_0.b", "dense_0.alpha"; "batchnorm_0.gamma", "batchnorm_0.beta"), then a
        BatchNorm layer's "running_mean" and "running_var" (PyTorch's and Keras's order).
        The parameters are views into ``flat_params``; the statistics the arrays themselves."""
        graph = self._require_built(what)
        flat = graph.flat_params
        by_layer: dict[str, list[ParamSlot]] = {}
        for s in graph.param_layout:
            by_layer.setdefault(s.name.rsplit(".", 1)[0], []).append(s)
        named: list[tuple[str, DeviceArray]] = []
        for stage in graph.stages:
            name = stage.layer.name
            named += [(s.name, flat[s.offset:s.offset + s.size].reshape(s.shape)) for s in by_layer.get(name, ())]
            if hasattr(stage, "running_mean"):
                named += [(f"{name}.running_mean", stage.running_mean),
                          (f"{name}.running_var", stage.running_var)]  # type: ignore[attr-defined]
        return named

    def state_dict(self, copy: bool = False) -> OrderedDict[str, DeviceArray]:
        """OrderedDict name -> array of everything that defines the function: the
        parameters ("dense_0.w" stored (in, out), "dense_0.b", "dense_0.alpha" for PReLU,
        "maxout_0.w", "batchnorm_0.gamma", "batchnorm_0.beta") and the BatchNorm running
        statistics ("batchnorm_0.running_mean", "batchnorm_0.running_var"), layer by layer.
        The parameters are views into ``flat_params`` and the statistics the model's own
        arrays (writing to them changes the model; on the GPU, device arrays); copy=True
        gives host copies."""
        named = self._named_arrays("state_dict")
        if copy:
            named = [(k, _host_copy(a)) for k, a in named]
        return OrderedDict(named)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copies the arrays of a ``state_dict`` (any numeric arrays of the right shapes:
        numpy, lists, CPU torch tensors) into the model. strict: the keys must be exactly
        the model's (a ValueError lists the missing and unexpected ones); strict=False
        loads the keys both have. Everything is checked before anything is written.
        Returns (missing_keys, unexpected_keys), as PyTorch does."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict: expected a mapping name -> array (model.state_dict()), got "
                            f"{type(state_dict).__name__}")
        targets = OrderedDict(self._named_arrays("load_state_dict"))
        given = list(state_dict.keys())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in given if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError(f"state_dict: {'; '.join(parts)} (the model's keys: {list(targets)}; "
                             "strict=False loads the keys both have)")
        pairs = [(k, targets[k], _as_float32(state_dict[k], f"state_dict[{k!r}]")) for k in given if k in targets]
        for k, dst, src in pairs:
            if src.shape != tuple(dst.shape):
                raise ValueError(f"state_dict[{k!r}]: expected shape {tuple(dst.shape)}, got {src.shape}")
        for _, dst, src in pairs:
            self._backend.copy_from_host(dst, src)
        return IncompatibleKeys(missing, unexpected)

    def get_weights(self) -> list[FloatArray]:
        """Keras's get_weights: host copies of every layer's arrays, layer by layer in
        layer order -- Dense: kernel (in, out), bias (and PReLU's slopes); Maxout: kernel,
        bias; BatchNorm: gamma, beta, moving mean, moving variance. The same arrays, in the
        same order, as ``state_dict()`` (whose keys name them). The flat buffer:
        ``get_flat_weights()``."""
        return [_host_copy(a) for _, a in self._named_arrays("get_weights")]

    def set_weights(self, weights: Sequence[npt.ArrayLike]) -> None:
        """Keras's set_weights: a list of arrays in ``get_weights()``'s order and shapes.
        Everything is checked before anything is written."""
        named = self._named_arrays("set_weights")
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
            raise TypeError(f"weights: expected a list of arrays (model.get_weights()), got {type(weights).__name__}")
        if len(weights) != len(named):
            hint = ""
            if len(weights) and np.ndim(weights[0]) == 1 and np.size(weights[0]) == self.num_params:
                hint = "; weights[0] looks like the flat buffer: use set_flat_weights()"
            raise ValueError(f"weights: expected {len(named)} arrays ({', '.join(k for k, _ in named)}), got "
                             f"{len(weights)}{hint}")
        arrays = [_as_float32(w, f"weights[{k}] ({name})") for k, ((name, _), w) in enumerate(zip(named, weights))]
        for k, ((name, dst), src) in enumerate(zip(named, arrays)):
            if src.shape != tuple(dst.shape):
                raise ValueError(f"weights[{k}] ({name}): expected shape {tuple(dst.shape)}, got {src.shape}")
        for (_, dst), src in zip(named, arrays):
            self._backend.copy_from_host(dst, src)

    def get_flat_weights(self) -> list[FloatArray]:
        """A host copy of the flat parameters followed by each BatchNorm layer's running
        mean and variance: ``[flat_params, mean_0, var_0, ...]`` (what a snapshot or a
        restore of the whole function needs, in as few arrays as possible)."""
        weights = [_host_copy(self.flat_params)]
        for mean, var in self.batchnorm_statistics():
            weights += [_host_copy(mean), _host_copy(var)]
        return weights

    def set_flat_weights(self, weights: Sequence[npt.ArrayLike]) -> None:
        """Sets what ``get_flat_weights()`` returned."""
        targets = [self.flat_params] + [a for pair in self.batchnorm_statistics() for a in pair]
        if len(weights) != len(targets):
            raise ValueError(f"weights: expected {len(targets)} arrays (flat parameters + BatchNorm statistics), "
                             f"got {len(weights)}")
        arrays = [_as_float32(w, f"weights[{k}]") for k, w in enumerate(weights)]
        for k, (dst, src) in enumerate(zip(targets, arrays)):
            if src.shape != tuple(dst.shape):
                raise ValueError(f"weights[{k}]: expected shape {tuple(dst.shape)}, got {src.shape}")
        for dst, src in zip(targets, arrays):
            self._backend.copy_from_host(dst, src)

    def replica_arrays(self) -> list[DeviceArray]:
        """Every array that must be equal on all replicas of a data-parallel run, in a
        fixed order: parameters, BatchNorm statistics, optimizer state."""
        arrays = [self.flat_params] + [a for pair in self.batchnorm_statistics() for a in pair]
        if self.optimizer is not None:
            arrays += [self.optimizer.state[k] for k in sorted(self.optimizer.state)]
        return arrays

    # -- training state ----------------------------------------------------------------------
    @property
    def global_step(self) -> int:
        """Training steps taken (refused non-finite steps included): the step number
        that seeds the dropout masks."""
        return self._step

    def training_state(self) -> dict[str, Any]:
        """The counters and generators that make training reproducible: {"step", "seed",
        "dropout_seed", "shuffle_rng"} (JSON-able)."""
        return {"step": self._step, "seed": self.seed, "dropout_seed": self._dropout_seed,
                "shuffle_rng": self.shuffle_rng.bit_generator.state}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restores what ``training_state()`` returned (a checkpoint resumes with it)."""
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step: expected a non-negative integer, got {step!r}")
        self._step = int(step)
        self.seed = _check_seed(state["seed"])
        self._dropout_seed = int(state["dropout_seed"])
        for s in (self._graph.stages if self._graph is not None else ()):
            s.seed = self._dropout_seed
        self.shuffle_rng.bit_generator.state = state["shuffle_rng"]

    def count_step(self) -> None:
        """Counts a training step this replica took no part in (a data-parallel rank
        with no rows of a short last batch), so dropout stays in step with the others."""
        self._step += 1

    def set_row_offset(self, row: int) -> None:
        """The global row of this process's first batch row: dropout draws the masks of
        the global samples (data-parallel ranks each take a slice of a batch)."""
        for s in self._require_built("set_row_offset").stages:
            s.row_offset = int(row)
