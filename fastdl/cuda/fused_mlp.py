"""A fully fused MLP for narrow networks (every hidden and output width <= 128), after
tiny-cuda-nn: one kernel runs the forward of all layers for a 32-row batch tile with the
activations in shared memory; one runs the backward chain (dz of every layer) the same
way; one more computes every layer's dW and db in a single launch (grid z = layer).

    sizes = (784, 64, 64, 64, 64, 10)   # input, hidden..., classes
    mlp = FusedMLP(sizes, "relu", batch=256)
    params = mlp.init_params(rng)       # one flat float32 device buffer
    logits = mlp.forward(x, params)     # (n, 10) view of a preallocated buffer
    mlp.backward(dlogits, x, params, grads)   # grads: flat, same layout as params

Parameters live in one flat buffer, layer by layer: W_l (in, out) row-major, then b_l,
so one optimizer launch updates every layer. The hidden layers use `activation`; the last
layer is linear (logits). The per-layer kernels (fastdl.cuda.kernels.dense_*) are the
oracle this path is tested against, and the path for wider layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numba import float32

from fastdl.cuda import activations as A
from fastdl.cuda import require
from fastdl.cuda.arrays import blocks, checked_f32, empty, expect_dim, launcher

if TYPE_CHECKING:
    from fastdl._typing import DeviceArray

cuda = require()

MAX_WIDTH = 128
BT = 32  # batch rows per block
KC = 16  # reduction chunk streamed through shared memory
THREADS = 256
W_COLS = MAX_WIDTH + 1  # padded: the transposing stores do not conflict
X_COLS = KC + 1
ZERO = np.float32(0.0)
_kernels: dict = {}


def _forward_kernel(act, write_z):
    @cuda.jit
    def kernel(logits, Y, Z, x, params, dims, woff, boff, N, nl, alpha):
        act_s = cuda.shared.array((2, BT, MAX_WIDTH), float32)
        Ws = cuda.shared.array((KC, W_COLS), float32)
        Xs = cuda.shared.array((BT, X_COLS), float32)
        acc = cuda.local.array(16, float32)
        tid = cuda.threadIdx.x
        ty = tid // 32
        tx = tid % 32
        row0 = cuda.blockIdx.x * BT
        cur = 0
        for layer in range(nl):
            din = dims[layer]
            dout = dims[layer + 1]
            wo = woff[layer]
            for q in range(16):
                acc[q] = ZERO
            for k0 in range(0, din, KC):
                for r in range(KC * MAX_WIDTH // THREADS):
                    e = tid + THREADS * r
                    kl = e // MAX_WIDTH
                    c = e % MAX_WIDTH
                    Ws[kl, c] = params[wo + (k0 + kl) * dout + c] if k0 + kl < din and c < dout else ZERO
                if layer == 0:
                    for r in range(BT * KC // THREADS):
                        e = tid + THREADS * r
                        rl = e // KC
                        kl = e % KC
                        Xs[rl, kl] = x[row0 + rl, k0 + kl] if row0 + rl < N and k0 + kl < din else ZERO
                cuda.syncthreads()
                for kk in range(KC):
                    for i in range(4):
                        a = Xs[ty + 8 * i, kk] if layer == 0 else act_s[cur, ty + 8 * i, k0 + kk]
                        for j in range(4):
                            acc[4 * i + j] += a * Ws[kk, tx + 32 * j]
                cuda.syncthreads()
            nxt = 1 - cur
            bo = boff[layer]
            last = layer == nl - 1
            for i in range(4):
                r = ty + 8 * i
                row = row0 + r
                for j in range(4):
                    c = tx + 32 * j
                    if c < dout:
                        z = acc[4 * i + j] + params[bo + c]
                        if last:
                            if row < N:
                                logits[row, c] = z
                        else:
                            y = A.activate(act, z, alpha)
                            act_s[nxt, r, c] = y
                            if row < N:
                                Y[layer, row, c] = y
                                if write_z:
                                    Z[layer, row, c] = z
                    else:
                        act_s[nxt, r, c] = ZERO
            cuda.syncthreads()
            cur = nxt

    return kernel


def _backward_kernel(act, from_z):
    @cuda.jit
    def kernel(DZ, dlogits, S, params, dims, woff, N, nl, alpha):
        act_s = cuda.shared.array((2, BT, MAX_WIDTH), float32)
        Ws = cuda.shared.array((KC, W_COLS), float32)
        acc = cuda.local.array(16, float32)
        tid = cuda.threadIdx.x
        ty = tid // 32
        tx = tid % 32
        row0 = cuda.blockIdx.x * BT
        c_out = dims[nl]
        for i in range(4):
            r = ty + 8 * i
            for j in range(4):
                c = tx + 32 * j
                act_s[0, r, c] = dlogits[row0 + r, c] if row0 + r < N and c < c_out else ZERO
        cuda.syncthreads()
        cur = 0
        for layer in range(nl - 1, 0, -1):
            din = dims[layer]
            dout = dims[layer + 1]
            wo = woff[layer]
            for q in range(16):
                acc[q] = ZERO
            for k0 in range(0, dout, KC):
                # Ws[kl, c] = W[c, k0 + kl]: W^T streamed in chunks of its rows
                for r in range(KC * MAX_WIDTH // THREADS):
                    e = tid + THREADS * r
                    kl = e % KC
                    c = e // KC
                    Ws[kl, c] = params[wo + c * dout + k0 + kl] if c < din and k0 + kl < dout else ZERO
                cuda.syncthreads()
                for kk in range(KC):
                    for i in range(4):
                        a = act_s[cur, ty + 8 * i, k0 + kk]
                        for j in range(4):
                            acc[4 * i + j] += a * Ws[kk, tx + 32 * j]
                cuda.syncthreads()
            nxt = 1 - cur
            for i in range(4):
                r = ty + 8 * i
                row = row0 + r
                for j in range(4):
                    c = tx + 32 * j
                    dz = ZERO
                    if c < din and row < N:
                        dz = acc[4 * i + j] * A.derivative(act, S[layer - 1, row, c], alpha)
                        DZ[layer - 1, row, c] = dz
                    act_s[nxt, r, c] = dz
            cuda.syncthreads()
            cur = nxt

    return kernel


@cuda.jit
def _weight_grads(grads, x, Y, DZ, dlogits, dims, woff, boff, N, nl):
    """grads[W_l] = A_l^T @ D_l and grads[b_l] = sum_n D_l for every layer l = blockIdx.z,
    with A_0 = x, A_l = Y[l - 1], D_l = DZ[l] (dlogits for the last layer)."""
    As = cuda.shared.array((16, 65), float32)
    Ds = cuda.shared.array((16, 65), float32)
    acc = cuda.local.array(16, float32)
    layer = cuda.blockIdx.z
    din = dims[layer]
    dout = dims[layer + 1]
    row0 = cuda.blockIdx.y * 64
    col0 = cuda.blockIdx.x * 64
    if row0 >= din or col0 >= dout:
        return
    last = layer == nl - 1
    tid = cuda.threadIdx.x
    ty = tid // 16
    tx = tid % 16
    for q in range(16):
        acc[q] = ZERO
    for n0 in range(0, N, 16):
        for r in range(4):
            e = tid + THREADS * r
            nl_ = e // 64
            m = e % 64
            n = n0 + nl_
            av = ZERO
            dv = ZERO
            if n < N:
                if row0 + m < din:
                    av = x[n, row0 + m] if layer == 0 else Y[layer - 1, n, row0 + m]
                if col0 + m < dout:
                    dv = dlogits[n, col0 + m] if last else DZ[layer, n, col0 + m]
            As[nl_, m] = av
            Ds[nl_, m] = dv
        cuda.syncthreads()
        for kk in range(16):
            for i in range(4):
                a = As[kk, ty + 16 * i]
                for j in range(4):
                    acc[4 * i + j] += a * Ds[kk, tx + 16 * j]
        cuda.syncthreads()
    wo = woff[layer]
    for i in range(4):
        m = row0 + ty + 16 * i
        if m < din:
            for j in range(4):
                c = col0 + tx + 16 * j
                if c < dout:
                    grads[wo + m * dout + c] = acc[4 * i + j]
    if row0 == 0 and tid < 64 and col0 + tid < dout:
        c = col0 + tid
        s = ZERO
        for n in range(N):
            s += dlogits[n, c] if last else DZ[layer, n, c]
        grads[boff[layer] + c] = s


def _kernel(kind, act, flag):
    key = (kind, act, flag)
    if key not in _kernels:
        _kernels[key] = (_forward_kernel if kind == "fwd" else _backward_kernel)(act, flag)
    return _kernels[key]


class FusedMLP:
    """The fused forward/backward of a narrow MLP with preallocated buffers for up to
    `batch` rows. See the module docstring."""

    def __init__(self, sizes: Sequence[int], activation: str = "relu", *, batch: int,
                 alpha: float | None = None) -> None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes: expected (inputs, hidden..., outputs) with every size >= 1, got {sizes}")
        for width in sizes[1:]:
            if width > MAX_WIDTH:
                raise ValueError(f"width {width} is not supported by the fused MLP; use width <= "
                                 f"{MAX_WIDTH} or the layer-by-layer path")
        if activation == "prelu":
            raise ValueError("activation: prelu is not supported by the fused MLP (its slopes are "
                             "per-layer parameters); use the layer-by-layer path")
        self.code = A.code_of(activation)
        self.activation = activation
        self.alpha, _ = A.parse_alpha(activation, alpha, 0, None)
        self.sizes = sizes
        self.batch = int(batch)
        self.n_layers = len(sizes) - 1
        woff, boff, o = [], [], 0
        for din, dout in zip(sizes[:-1], sizes[1:]):
            woff.append(o)
            o += din * dout
            boff.append(o)
            o += dout
        self.n_params = o
        self.woff, self.boff = woff, boff
        self._dims = cuda.to_device(np.array(sizes, dtype=np.int64))
        self._woff = cuda.to_device(np.array(woff, dtype=np.int64))
        self._boff = cuda.to_device(np.array(boff, dtype=np.int64))
        hidden = max(self.n_layers - 1, 1)
        width = max(sizes[1:-1], default=1)
        self.needs_z = activation in A.NEEDS_Z
        self._Y = empty((hidden, self.batch, width))
        self._Z = empty((hidden, self.batch, width) if self.needs_z else (1, 1, 1))
        self._DZ = empty((hidden, self.batch, width))
        self._logits = empty((self.batch, sizes[-1]))

    def layer_views(self, params: DeviceArray) -> list[tuple[DeviceArray, DeviceArray]]:
        """[(W_l, b_l)] as views into the flat buffer (no copies), for the per-layer path."""
        out = []
        for (din, dout), wo, bo in zip(zip(self.sizes[:-1], self.sizes[1:]), self.woff, self.boff):
            out.append((params[wo:wo + din * dout].reshape(din, dout), params[bo:bo + dout]))
        return out

    def init_params(self, rng: np.random.Generator) -> DeviceArray:
        """PyTorch's Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as one device buffer."""
        host = np.empty(self.n_params, dtype=np.float32)
        for (din, dout), wo, bo in zip(zip(self.sizes[:-1], self.sizes[1:]), self.woff, self.boff):
            bound = 1.0 / np.sqrt(din)
            host[wo:bo + dout] = rng.uniform(-bound, bound, bo + dout - wo)
        return cuda.to_device(host)

    def _check(self, x: Any, params: Any) -> tuple[Any, Any]:
        x = checked_f32(x, "x", 2, f"of shape (N, {self.sizes[0]})")
        expect_dim(x, "x", 1, self.sizes[0], "the network's input width")
        if x.shape[0] > self.batch:
            raise ValueError(f"x: {x.shape[0]} rows exceed the batch of {self.batch} this FusedMLP "
                             "was built for")
        params = checked_f32(params, "params", 1, "(the flat parameter buffer)")
        expect_dim(params, "params", 0, self.n_params, "FusedMLP.n_params")
        return x, params

    def forward(self, x: DeviceArray, params: DeviceArray) -> DeviceArray:
        """logits (N, C): a view of a buffer that the next forward overwrites."""
        x, params = self._check(x, params)
        return self.forward_checked(x, params)

    def forward_checked(self, x: DeviceArray, params: DeviceArray) -> DeviceArray:
        """forward() for arguments already checked (FusedMLPStep checks its buffers once)."""
        n = x.shape[0]
        if n:
            launcher(_kernel("fwd", self.code, self.needs_z), (blocks(n, BT),), (THREADS,))(
                self._logits, self._Y, self._Z, x, params, self._dims, self._woff, self._boff,
                n, self.n_layers, self.alpha)
        return self._logits[:n]

    def backward(self, dlogits: DeviceArray, x: DeviceArray, params: DeviceArray, grads: DeviceArray) -> DeviceArray:
        """Writes d(loss)/d(params) into `grads` (flat, the layout of params) for the
        batch of the last forward (x must be the same array)."""
        x, params = self._check(x, params)
        n = x.shape[0]
        dlogits = checked_f32(dlogits, "dlogits", 2, "of shape (N, C)")
        expect_dim(dlogits, "dlogits", 0, n, "N = x.shape[0]")
        expect_dim(dlogits, "dlogits", 1, self.sizes[-1], "the network's output width")
        grads = checked_f32(grads, "grads", 1, "(flat, the layout of params)")
        expect_dim(grads, "grads", 0, self.n_params, "FusedMLP.n_params")
        if n == 0:
            grads.copy_to_device(np.zeros(self.n_params, dtype=np.float32))
            return grads
        return self.backward_checked(dlogits, x, params, grads)

    def backward_checked(self, dlogits: DeviceArray, x: DeviceArray, params: DeviceArray,
                         grads: DeviceArray) -> DeviceArray:
        """backward() for arguments already checked, with at least one row."""
        n = x.shape[0]
        if self.n_layers > 1:
            saved = self._Z if self.needs_z else self._Y
            launcher(_kernel("bwd", self.code, self.needs_z), (blocks(n, BT),), (THREADS,))(
                self._DZ, dlogits, saved, params, self._dims, self._woff, n, self.n_layers, self.alpha)
        widest = max(self.sizes[1:])
        grid = (blocks(widest, 64), blocks(max(self.sizes[:-1]), 64), self.n_layers)
        launcher(_weight_grads, grid, (THREADS,))(grads, x, self._Y, self._DZ, dlogits, self._dims,
                                                  self._woff, self._boff, n, self.n_layers)
        return grads
