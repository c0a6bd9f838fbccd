"""The executable form of a network: a list of stages, each one or two kernel calls.

A stage holds views into the network's flat parameter and gradient buffers, the kernel
functions of its device (bound once, so the hot loop does no name lookups or dispatch)
and, per batch size, its preallocated output buffer. ``forward_train`` keeps what
``backward`` needs; ``backward`` writes the parameter gradients into the flat gradient
buffer and returns the gradient with respect to the stage's input (None for the first
stage with parameters: nothing upstream needs it). Every array a step produces goes into
a buffer the stage keeps per batch size (the kernels' out=), so after a batch size's
first step a training step allocates no arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fastdl.activations import NEEDS_Z
#: the `rows` of a kept buffer that belongs to no batch size (never released)
FIXED = -1


class Stage:
    params = ()  # (layer, ParamSpec) pairs in buffer order
    max_norm = None
    need_dx = True
    # The GEMM kernels' precision= keyword ({} on a device whose kernels compute in fp32
    # only): set by Sequential.compile, passed by the Dense and Maxout stages.
    precision: dict[str, Any] = {}
    # Row of the global mini-batch that this batch's first row is: data-parallel ranks
    # (fastdl.distributed) set it so dropout draws the mask of the global sample index.
    row_offset = 0

    #: the layer the stage runs (each subclass sets it)
    layer: Any
    #: where the stage's weight matrix starts in the flat buffer (set by fastdl._graph)
    w_offset: int

    if TYPE_CHECKING:
        @property
        def input_width(self) -> int:
            """The width of the stage's input (each subclass says)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._kept_buffers: dict[tuple[str, tuple[int, ...]], Any] = {}
        self._rows_of: dict[tuple[str, tuple[int, ...]], int] = {}

    def _kept(self, name, shape, dtype=np.float32, rows=None):
        """This stage's buffer `name` of `shape`: allocated on the first step with that
        shape (a new batch size), reused by every later one. What it holds is read
        before the next step overwrites it (backward reads the forward's arrays).
        rows: the batch size it belongs to (shape[0] unless given), for release_rows."""
        key = (name, shape)
        buf = self._kept_buffers.get(key)
        if buf is None:
            buf = self._kept_buffers[key] = self.backend.empty(shape, dtype)
            self._rows_of[key] = shape[0] if rows is None else rows
        return buf

    def release_rows(self, rows):
        """Drops the buffers kept for batch size `rows` (the network bounds how many
        batch sizes keep buffers)."""
        for key in [k for k, r in self._rows_of.items() if r == rows]:
            del self._kept_buffers[key], self._rows_of[key]

    def _mask_buffer(self, rows, size):
        return self._kept("mask", ((size + 7) // 8,), np.uint8, rows=rows)

    def bind(self, views, grads, seed):
        """Receives its parameter/gradient views (dicts by parameter name) and the
        network's dropout seed."""
        self.seed = seed

    def forward_train(self, x, step):
        raise NotImplementedError

    def forward_eval(self, x):
        raise NotImplementedError

    def prepare_backward(self, rows):
        """Allocates what backward needs for batch size `rows` ahead of it, so that a
        backward that updates weights as it goes cannot fail half-way for memory."""
        if self.need_dx:
            self._kept("dx", (rows, self.input_width))

    def backward(self, dy, update=None):
        """update: the optimizer step being applied in this backward pass
        (Optimizer.prepare_step), for the stages whose kernels update their weights."""
        raise NotImplementedError


class DenseStage(Stage):
    """Dense + activation (+ dropout): dense_forward, or dense_dropout_forward when a
    Dropout follows."""

    def __init__(self, backend, layer, activation, alpha, dropout, stream):
        super().__init__(backend)
        self.layer = layer
        self.act = activation
        self.scalar_alpha = alpha if activation != "prelu" else None
        self.needs_z = activation in NEEDS_Z
        self.prelu = activation == "prelu"
        self.m = layer.out_features
        self.max_norm = layer.max_norm
        self.stream = stream
        self.p = dropout.p if dropout is not None else 0.0
        self.dropout = dropout
        self.scale = not (dropout is not None and dropout.scale_at_test)
        self.test_scale = (1.0 - self.p) if (dropout is not None and dropout.scale_at_test and self.p) else None
        k = backend.kernels
        self._fwd, self._bwd = k.dense_forward, k.dense_backward
        if self.p:
            self._dfwd, self._dbwd = k.dense_dropout_forward, k.dense_dropout_backward
        self.z = self.mask = None

    @property
    def input_width(self):
        return self.w.shape[0]

    def bind(self, views, grads, seed):
        self.seed = seed
        self.w, self.gw = views["w"], grads["w"]
        self.b, self.gb = views.get("b"), grads.get("b")
        if self.prelu:
            self.alpha, self.galpha = views["alpha"], grads["alpha"]
        else:
            self.alpha = self.scalar_alpha

    def forward_train(self, x, step):
        self.x = x
        shape = (x.shape[0], self.m)
        y = self._kept("y", shape)
        z = (self._kept("z", shape),) if self.needs_z else ()
        if self.p:
            self.mask = self._mask_buffer(shape[0], shape[0] * self.m)
            self._dfwd(x, self.w, self.b, self.act, self.p, self.seed, step, self.stream, alpha=self.alpha,
                       scale=self.scale, offset=self.row_offset * self.m, out=(y, self.mask) + z, **self.precision)
        else:
            self._fwd(x, self.w, self.b, self.act, alpha=self.alpha, out=(y,) + z, **self.precision)
        self.y = y
        self.z = z[0] if z else None
        return y

    def forward_eval(self, x):
        shape = (x.shape[0], self.m)
        y = self._kept("y", shape)
        self._fwd(x, self.w, self.b, self.act, alpha=self.alpha,
                  out=(y, self._kept("z", shape)) if self.needs_z else y, **self.precision)
        if self.test_scale is not None:
            self.backend.scale_(y, self.test_scale)
        return y

    def backward(self, dy, update=None):
        # dw (and db, dalpha) are written straight into this layer's views of the flat
        # gradient buffer, dx into a buffer kept per batch size (consumed by the stage
        # below before the next step); a layer without bias gets a db it throws away.
        # With an update, the kernel steps w itself and dw is not kept.
        dx = self._kept("dx", (dy.shape[0], self.w.shape[0])) if self.need_dx else None
        out = (dx, self.gw if update is None else None, self.gb) + ((self.galpha,) if self.prelu else ())
        if self.p:
            r = self._dbwd(dy, self.x, self.w, self.act, self.mask, self.p, y=self.y, z=self.z, alpha=self.alpha,
                           scale=self.scale, need_dx=self.need_dx, out=out, update=update, **self.precision)
        else:
            r = self._bwd(dy, self.x, self.w, self.act, y=self.y, z=self.z, alpha=self.alpha, need_dx=self.need_dx,
                          out=out, update=update, **self.precision)
        return r[0]


class MaxoutStage(Stage):
    """dense_maxout_forward: the pre-activations never reach memory."""

    def __init__(self, backend, layer):
        super().__init__(backend)
        self.layer = layer
        self.pieces = layer.pieces
        self.max_norm = layer.max_norm
        k = backend.kernels
        self._fwd, self._bwd = k.dense_maxout_forward, k.dense_maxout_backward

    @property
    def input_width(self):
        return self.w.shape[0]

    def bind(self, views, grads, seed):
        self.seed = seed
        self.w, self.b = views["w"], views["b"]
        self.gw, self.gb = grads["w"], grads["b"]

    def _outputs(self, n):
        shape = (n, self.w.shape[1] // self.pieces)
        return self._kept("y", shape), self._kept("argmax", shape, np.uint8)

    def forward_train(self, x, step):
        self.x = x
        self.y, self.argmax = self._fwd(x, self.w, self.b, self.pieces, out=self._outputs(x.shape[0]),
                                        **self.precision)
        return self.y

    def forward_eval(self, x):
        return self._fwd(x, self.w, self.b, self.pieces, out=self._outputs(x.shape[0]), **self.precision)[0]

    def backward(self, dy, update=None):
        # dw and db straight into the flat gradient buffer, as DenseStage (w stepped by the
        # kernel with an update).
        dx = self._kept("dx", self.x.shape) if self.need_dx else None
        return self._bwd(dy, self.x, self.w, self.argmax, self.pieces, need_dx=self.need_dx,
                         out=(dx, self.gw if update is None else None, self.gb), update=update,
                         **self.precision)[0]


class DropoutStage(Stage):
    """A Dropout that no Dense layer precedes (input dropout, or after Maxout/BatchNorm)."""

    def __init__(self, backend, layer, dim, stream):
        super().__init__(backend)
        self.layer = layer
        self.p = layer.p
        self.scale = not layer.scale_at_test
        self.test_scale = (1.0 - self.p) if (layer.scale_at_test and self.p) else None
        self.m = dim
        self.stream = stream
        k = backend.kernels
        self._fwd, self._bwd = k.dropout_forward, k.dropout_backward

    @property
    def input_width(self):
        return self.m

    def prepare_backward(self, rows):
        if self.p:
            self._kept("dx", (rows, self.m))

    def forward_train(self, x, step):
        if not self.p:
            return x
        y, self.mask = self._fwd(x, self.p, self.seed, step, self.stream, scale=self.scale,
                                 out=(self._kept("y", x.shape), self._mask_buffer(x.shape[0], x.size)),
                                 offset=self.row_offset * self.m)
        return y

    def forward_eval(self, x):
        if self.test_scale is None:
            return x
        out = self._kept("y", x.shape)
        self.backend.copy(out, x)
        self.backend.scale_(out, self.test_scale)
        return out

    def backward(self, dy, update=None):
        if not self.p:
            return dy
        return self._bwd(dy, self.mask, self.p, scale=self.scale, out=self._kept("dx", dy.shape))


class BatchNormStage(Stage):
    def __init__(self, backend, layer):
        super().__init__(backend)
        self.layer = layer
        self.momentum, self.eps = layer.momentum, layer.eps
        n = layer.num_features
        self.running_mean = backend.zeros(n)
        self.running_var = backend.from_host(_ones(n))
        k = backend.kernels
        self._fwd_train, self._fwd_eval = k.batchnorm_forward_train, k.batchnorm_forward_eval
        self._bwd = k.batchnorm_backward

    @property
    def input_width(self):
        return self.layer.num_features

    def prepare_backward(self, rows):
        self._kept("dx", (rows, self.layer.num_features))

    def bind(self, views, grads, seed):
        self.seed = seed
        self.gamma, self.beta = views["gamma"], views["beta"]
        self.ggamma, self.gbeta = grads["gamma"], grads["beta"]

    def forward_train(self, x, step):
        self.x = x
        m = x.shape[1]
        out = (self._kept("y", x.shape), self._kept("save_mean", (m,), rows=FIXED),
               self._kept("save_invstd", (m,), rows=FIXED))
        y, self.save_mean, self.save_invstd = self._fwd_train(
            x, self.gamma, self.beta, self.running_mean, self.running_var, momentum=self.momentum, eps=self.eps,
            out=out)
        return y

    def forward_eval(self, x):
        return self._fwd_eval(x, self.gamma, self.beta, self.running_mean, self.running_var, eps=self.eps,
                              out=self._kept("y", x.shape))

    def keep_running_stats(self):
        """Copies the running statistics aside, so a step refused for a non-finite loss
        can put them back (its forward pass has already folded the batch into them)."""
        self.backend.copy(self._kept("kept_running_mean", self.running_mean.shape, rows=FIXED), self.running_mean)
        self.backend.copy(self._kept("kept_running_var", self.running_var.shape, rows=FIXED), self.running_var)

    def restore_running_stats(self):
        self.backend.copy(self.running_mean, self._kept("kept_running_mean", self.running_mean.shape, rows=FIXED))
        self.backend.copy(self.running_var, self._kept("kept_running_var", self.running_var.shape, rows=FIXED))

    def backward(self, dy, update=None):
        # dgamma and dbeta straight into the flat gradient buffer (stepped afterwards).
        dx = self._bwd(dy, self.x, self.gamma, self.save_mean, self.save_invstd,
                       out=(self._kept("dx", dy.shape), self.ggamma, self.gbeta))[0]
        return dx if self.need_dx else None


def _ones(n):
    return np.ones(n, np.float32)
