"""Dense layer on the GPU: y = f(x @ w + b) forward (one launch) and backward (three:
dz + db, dx = dz @ w^T, dw = x^T @ dz). Same API and checks as the CPU kernels
(docs/kernels.md)."""

from fastdl.cuda import activations as A
from fastdl.cuda import column_grad, gemm
from fastdl.cuda.arrays import (checked_f32, checked_out, empty, expect_dim, given_outputs, no_update,
                                output_arrays_or_first, scratch)


def check_dense(x, w, b):
    x = checked_f32(x, "x", 2, "of shape (N, K)")
    w = checked_f32(w, "w", 2, "of shape (K, M)")
    expect_dim(w, "w", 0, x.shape[1], "K = x.shape[1]; w is stored (in, out)")
    if b is not None:
        b = checked_f32(b, "b", 1, "of shape (M,)")
        expect_dim(b, "b", 0, w.shape[1], "M = w.shape[1]")
    return x, w, b


def parse_alpha(activation, alpha, m):
    def vec(a):
        d = checked_f32(a, "alpha", 1, "of shape (M,) for prelu")
        expect_dim(d, "alpha", 0, m, "one slope per output unit, M = w.shape[1]")
        return d
    return A.parse_alpha(activation, alpha, m, vec)


def dense_forward(x, w, b, activation="linear", *, alpha=None, out=None):
    """y = f(x @ w + b); returns y, or (y, z) for prelu, silu and gelu."""
    code = A.code_of(activation)
    x, w, b = check_dense(x, w, b)
    n, k = x.shape
    m = w.shape[1]
    a_scalar, a_vec = parse_alpha(activation, alpha, m)
    needs_z = activation in A.NEEDS_Z
    inputs = (("x", x), ("w", w), ("b", b), ("alpha", a_vec))
    # out= is y alone (an array) or every result as a tuple: (y,), or (y, z) where z is kept.
    outs = output_arrays_or_first(out, [("y", (n, m))] + ([("z", (n, m))] if needs_z else []), inputs)
    y, z = outs[0], (outs[1] if needs_z else None)
    kernel = gemm.gemm_kernel(False, False, gemm.DENSE, code, b is not None, needs_z)
    gemm.launch(kernel, x, w, y, n, m, k, Z=z, bias=b, alpha_vec=a_vec, alpha=a_scalar)
    return (y, z) if needs_z else y


def check_saved(activation, y, z, n, m):
    """The array the derivative works from: z for NEEDS_Z, y for the others, None for linear."""
    if activation in A.NEEDS_Z:
        if z is None:
            raise ValueError(f"z: activation '{activation}' needs the pre-activation z returned by "
                             "dense_forward (y is not enough)")
        s, name = z, "z"
    elif activation != "linear":
        if y is None:
            raise ValueError(f"y: activation '{activation}' needs the forward output y")
        s, name = y, "y"
    else:
        return None
    s = checked_f32(s, name, 2, "of shape (N, M)")
    expect_dim(s, name, 0, n, "N = x.shape[0]")
    expect_dim(s, name, 1, m, "M = w.shape[1]")
    return s


def gradient_outputs(out, n, k, m, need_dx, prelu, inputs):
    """The optional out=(dx, dw, db[, dalpha]) of the dense backward kernels, as on the
    CPU: each entry a device array of the result's shape or None (allocate it); no entry
    may share memory with an input or another entry. Returns the 4 arrays (None where
    not wanted)."""
    specs = [("dx", (n, k)), ("dw", (k, m)), ("db", (m,))] + ([("dalpha", (m,))] if prelu else [])
    given = given_outputs(out, specs, inputs)
    if not need_dx and given[0] is not None:
        raise ValueError("out[0] (dx): must be None when need_dx is False")
    result = [g if g is not None or (i == 0 and not need_dx) else empty(spec[1])
              for i, (g, spec) in enumerate(zip(given, specs))]
    return result + [None] * (4 - len(result))


def weight_grads(dz, x, w, need_dx, dx=None, dw=None):
    """(dx, dw) = (dz @ w^T, x^T @ dz): two launches of the tiled GEMM (into dx/dw when
    given)."""
    n, k = x.shape
    m = w.shape[1]
    if need_dx:
        dx = empty((n, k)) if dx is None else dx
        gemm.launch(gemm.gemm_kernel(False, True), dz, w, dx, n, k, m)
    else:
        dx = None
    dw = empty((k, m)) if dw is None else dw
    gemm.launch(gemm.gemm_kernel(True, False), x, dz, dw, k, m, n)
    return dx, dw


def dense_backward(dy, x, w, activation, *, y=None, z=None, alpha=None, need_dx=True, out=None, update=None):
    """(dx, dw, db), plus dalpha for prelu; dx is None when need_dx is False.
    out=(dx, dw, db[, dalpha]): preallocated results (entries may be None)."""
    no_update(update)
    code = A.code_of(activation)
    dy = checked_f32(dy, "dy", 2, "of shape (N, M)")
    x, w, _ = check_dense(x, w, None)
    n = x.shape[0]
    m = w.shape[1]
    expect_dim(dy, "dy", 0, n, "N = x.shape[0]")
    expect_dim(dy, "dy", 1, m, "M = w.shape[1]")
    a_scalar, a_vec = parse_alpha(activation, alpha, m)
    s = check_saved(activation, y, z, n, m)
    dx, dw, db, dalpha = gradient_outputs(out, n, x.shape[1], m, need_dx, activation == "prelu",
                                          [("dy", dy), ("x", x), ("w", w), ("y" if z is None else "z", s),
                                           ("alpha", a_vec)])
    dz = scratch("dense_backward.dz", (n, m)) if code != A.LINEAR else None
    if m:
        column_grad.launch(column_grad.ACT, code, dz=dz, db=db, dy=dy, N=n, M=m, s=s,
                           dalpha=dalpha, alpha_vec=a_vec, alpha=a_scalar)
    dx, dw = weight_grads(dy if dz is None else dz, x, w, need_dx, dx, dw)
    return (dx, dw, db, dalpha) if dalpha is not None else (dx, dw, db)


def matmul(a, b, *, out=None):
    """a @ b for a (M, K), b (K, N)."""
    a = checked_f32(a, "a", 2, "of shape (M, K)")
    b = checked_f32(b, "b", 2, "of shape (K, N)")
    m, k = a.shape
    expect_dim(b, "b", 0, k, "K = a.shape[1]")
    n = b.shape[1]
    c = empty((m, n)) if out is None else checked_out(out, "out", (m, n), (("a", a), ("b", b)))
    gemm.launch(gemm.gemm_kernel(False, False), a, b, c, m, n, k)
    return c
