"""What a network holds -- its parameters, BatchNorm statistics and training counters --
and the ways to read and set it. fastdl.network.Network inherits these; the trainer,
data-parallel strategies, callbacks and persistence use only them."""

import numpy as np

from fastdl import _device

__all__ = ["NetworkState"]


def _check_seed(seed):
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2 ** 63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer or None, got {seed!r}")
    return int(seed)


class NetworkState:
    """Mixin: the state of a built network (``self._graph``, ``self._step``, seeds)."""

    @property
    def flat_params(self):
        """Every parameter, one float32 buffer (each layer's arrays are views into it)."""
        return self._require_built("flat_params").flat_params

    @property
    def flat_grads(self):
        """The gradients, in flat_params' layout."""
        return self._require_built("flat_grads").flat_grads

    @property
    def decay_segments(self):
        """int64 (S, 2) [start, stop) ranges of the weight matrices: weight decay and L1
        apply there only."""
        return self._require_built("decay_segments").decay_segments

    @property
    def param_layout(self):
        """(name, offset, shape, size, decay) of every parameter array, in buffer order."""
        return self._require_built("param_layout").param_layout

    # -- parameters ----------------------------------------------------------------------
    @property
    def num_params(self):
        return int(self._require_built("num_params").flat_params.shape[0])

    def count_params(self):
        """The number of parameters (Keras's name): the length of ``flat_params``."""
        return self.num_params

    def named_parameters(self):
        """[(name, view)], each a view into ``flat_params`` (writing to it changes the model)."""
        flat = self._require_built("named_parameters").flat_params
        return [(s.name, flat[s.offset:s.offset + s.size].reshape(s.shape)) for s in self.param_layout]

    def parameters(self):
        """The parameter arrays, views into the flat buffer, in buffer order."""
        return [view for _, view in self.named_parameters()]

    def batchnorm_statistics(self):
        """[(running_mean, running_var)] of each BatchNorm layer, in layer order (the
        arrays themselves, on the model's device)."""
        return [(s.running_mean, s.running_var) for s in self._require_built("batchnorm_statistics").bn_stages]

    def get_weights(self):
        """A host copy of everything that defines the function: the flat parameters and
        the BatchNorm running statistics."""
        weights = [_device.to_host(self.flat_params).copy()]
        for mean, var in self.batchnorm_statistics():
            weights += [_device.to_host(mean).copy(), _device.to_host(var).copy()]
        return weights

    def set_weights(self, weights):
        targets = [self.flat_params] + [a for pair in self.batchnorm_statistics() for a in pair]
        if len(weights) != len(targets):
            raise ValueError(f"weights: expected {len(targets)} arrays (flat parameters + BatchNorm statistics), "
                             f"got {len(weights)}")
        for k, (dst, src) in enumerate(zip(targets, weights)):
            src = np.asarray(src)
            if src.shape != tuple(dst.shape):
                raise ValueError(f"weights[{k}]: expected shape {tuple(dst.shape)}, got {src.shape}")
        for dst, src in zip(targets, weights):
            self._backend.copy_from_host(dst, np.ascontiguousarray(src, dtype=np.float32))

    def replica_arrays(self):
        """Every array that must be equal on all replicas of a data-parallel run, in a
        fixed order: parameters, BatchNorm statistics, optimizer state."""
        arrays = [self.flat_params] + [a for pair in self.batchnorm_statistics() for a in pair]
        if self.optimizer is not None:
            arrays += [self.optimizer.state[k] for k in sorted(self.optimizer.state)]
        return arrays

    # -- training state ----------------------------------------------------------------------
    @property
    def global_step(self):
        """Training steps taken (refused non-finite steps included): the step number
        that seeds the dropout masks."""
        return self._step

    def training_state(self):
        """The counters and generators that make training reproducible: {"step", "seed",
        "dropout_seed", "shuffle_rng"} (JSON-able)."""
        return {"step": self._step, "seed": self.seed, "dropout_seed": self._dropout_seed,
                "shuffle_rng": self.shuffle_rng.bit_generator.state}

    def load_training_state(self, state):
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step: expected a non-negative integer, got {step!r}")
        self._step = int(step)
        self.seed = _check_seed(state["seed"])
        self._dropout_seed = int(state["dropout_seed"])
        for s in (self._graph.stages if self._graph is not None else ()):
            s.seed = self._dropout_seed
        self.shuffle_rng.bit_generator.state = state["shuffle_rng"]

    def count_step(self):
        """Counts a training step this replica took no part in (a data-parallel rank
        with no rows of a short last batch), so dropout stays in step with the others."""
        self._step += 1

    def set_row_offset(self, row):
        """The global row of this process's first batch row: dropout draws the masks of
        the global samples (data-parallel ranks each take a slice of a batch)."""
        for s in self._require_built("set_row_offset").stages:
            s.row_offset = int(row)
