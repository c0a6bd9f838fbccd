"""The curated CPU kernel cases: fastdl against PyTorch (CPU) and numpy.

A case's ``build(ctx)`` makes the data and returns a :class:`Prepared`: the
implementations (fastdl first), each with a check against a float64 reference (or a
property the result must have), and the work per call (flops or bytes) for the achieved
rate. A kernel missing from this build of fastdl makes the case raise :class:`Skip`
with a note; a peer missing on the machine is left out with a note.
"""

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from fastdl import kernels as K

from . import peers
from .timing import Impl


class Skip(Exception):
    """The case cannot run here (kernel or data missing); the message says why."""


@dataclass
class Prepared:
    impls: List[Impl]
    work: Optional[float] = None  # flops (unit GFLOP/s) or bytes (unit GB/s) per call
    unit: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    rounds: Optional[int] = None  # overrides the profile's rounds (whole fits)


@dataclass
class Case:
    name: str
    group: str
    build: Callable[["Context"], Prepared]


@dataclass
class Context:
    """What a case's build may look at: the size profile and the run's options."""

    sizes: object
    mnist: Optional[str] = None


def need_kernel(*names):
    missing = [n for n in names if not hasattr(K, n)]
    if missing:
        raise Skip(f"fastdl.kernels.{missing[0]} is not in this build")


def close(actual, expected, rtol, atol, what="result"):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol,
                               err_msg=f"{what} differs from the float64 reference")


def torch_or_note(notes):
    t = peers.torch()
    if t is None:
        notes.append("PyTorch not installed: torch column skipped")
    return t


def row_sample(n, count=256):
    """Rows spread over the whole matrix (every tile edge region gets some)."""
    return np.arange(0, n, max(1, n // count))


def _id(shape):
    return "x".join(map(str, shape))


# ---------------------------------------------------------------- dense and GEMM
def dense_data(n, k, m, seed=0):
    """x (n, k), w (k, m) scaled by 1/sqrt(k), b (m,): float32, from `seed`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    return x, w, b


def dense_forward_case(shape):
    def build(ctx):
        n, k, m = shape
        x, w, b = dense_data(n, k, m)
        rows = row_sample(n)
        ref = np.maximum(x[rows].astype(np.float64) @ w + b, 0)
        check = lambda y: close(np.asarray(y)[rows], ref, 1e-3, 1e-3, "y")  # noqa: E731
        out = np.empty((n, m), np.float32)
        impls = [Impl("fastdl", lambda: K.dense_forward(x, w, b, "relu", out=out), check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx, tw, tb = map(t.from_numpy, (x, w, b))
            impls.append(Impl("torch", lambda: t.relu(t.addmm(tb, tx, tw)), lambda r: check(r.numpy())))
        impls.append(Impl("numpy", lambda: np.maximum(x @ w + b, 0), check))
        return Prepared(impls, 2.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"dense fwd relu {_id(shape)}", "dense", build)


def dense_backward_case(shape):
    def build(ctx):
        n, k, m = shape
        x, w, b = dense_data(n, k, m)
        dy = np.random.default_rng(1).standard_normal((n, m), dtype=np.float32)
        y = K.dense_forward(x, w, b, "relu")
        rows = row_sample(n)
        cols = row_sample(m, 128)

        def checker(y_used):  # the reference follows the relu mask the implementation saw
            dz = dy.astype(np.float64) * (y_used > 0)
            dx_ref = dz[rows] @ w.T.astype(np.float64)
            dw_ref = x.T.astype(np.float64) @ dz[:, cols]
            db_ref = dz.sum(0)

            def check(r):
                dx, dw, db = (np.asarray(a) for a in r[:3])
                close(dx[rows], dx_ref, 1e-3, 1e-2, "dx")
                close(dw[:, cols], dw_ref, 1e-3, 1e-2, "dw")
                close(db, db_ref, 1e-3, 1e-2, "db")

            return check

        impls = [Impl("fastdl", lambda: K.dense_backward(dy, x, w, "relu", y=y), checker(y))]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx = t.from_numpy(x).requires_grad_()
            tw = t.from_numpy(w).requires_grad_()
            tb = t.from_numpy(b).requires_grad_()
            ty = t.relu(t.addmm(tb, tx, tw))
            tdy = t.from_numpy(dy)
            tcheck = checker(ty.detach().numpy())
            impls.append(Impl(
                "torch", lambda: t.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True),
                lambda r: tcheck([a.numpy() for a in r])))
            notes.append("torch: autograd.grad on relu(addmm), forward outside the timing")

        def numpy_backward():
            dz = dy * (y > 0)
            return dz @ w.T, x.T @ dz, dz.sum(0)

        impls.append(Impl("numpy", numpy_backward, checker(y)))
        return Prepared(impls, 4.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"dense bwd relu {_id(shape)}", "dense", build)


def gemm_case(n):
    def build(ctx):
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        rows = row_sample(n, 64)
        ref = a[rows].astype(np.float64) @ b
        check = lambda c: close(np.asarray(c)[rows], ref, 1e-3, 1e-2, "a @ b")  # noqa: E731
        out = np.empty((n, n), np.float32)
        impls = [Impl("fastdl", lambda: K.matmul(a, b, out=out), check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            ta, tb, tout = t.from_numpy(a), t.from_numpy(b), t.from_numpy(np.empty_like(out))
            impls.append(Impl("torch", lambda: t.matmul(ta, tb, out=tout), lambda r: check(r.numpy())))
        nout = np.empty_like(out)
        impls.append(Impl("numpy", lambda: np.matmul(a, b, out=nout), check))
        return Prepared(impls, 2.0 * n**3, "GFLOP/s", notes)

    return Case(f"gemm {n}^3", "gemm", build)


# ---------------------------------------------------------------- losses
def softmax_ce_case(shape):
    def build(ctx):
        need_kernel("softmax_cross_entropy")
        n, c = shape
        rng = np.random.default_rng(0)
        logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
        labels = rng.integers(0, c, n)
        x = logits.astype(np.float64)
        lsm = x - x.max(1, keepdims=True)
        lsm -= np.log(np.exp(lsm).sum(1, keepdims=True))
        loss_ref = -lsm[np.arange(n), labels].mean()
        grad_ref = np.exp(lsm)
        grad_ref[np.arange(n), labels] -= 1
        grad_ref /= n

        def check(r):
            close(r[0], loss_ref, 1e-5, 0, "loss")
            close(r[1], grad_ref, 1e-3, 1e-6 / n, "dlogits")

        impls = [Impl("fastdl", lambda: K.softmax_cross_entropy(logits, labels), check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx = t.from_numpy(logits).requires_grad_()
            tl = t.from_numpy(labels)

            def torch_ce():
                loss = t.nn.functional.cross_entropy(tx, tl)
                return loss, t.autograd.grad(loss, tx)[0]

            impls.append(Impl("torch", torch_ce, lambda r: check((r[0].item(), r[1].numpy()))))

        def numpy_ce():
            z = logits - logits.max(1, keepdims=True)
            e = np.exp(z)
            s = e.sum(1, keepdims=True)
            loss = float(np.log(s[:, 0]).mean() - z[np.arange(n), labels].mean())
            g = e / s
            g[np.arange(n), labels] -= 1
            g /= n
            return loss, g

        impls.append(Impl("numpy", numpy_ce, check))
        return Prepared(impls, 2.0 * logits.nbytes + labels.nbytes, "GB/s", notes)

    return Case(f"softmax-CE fwd+bwd {_id(shape)}", "losses", build)


# ---------------------------------------------------------------- batch norm
def bn_data(n, m):
    """Batch-norm inputs (x, gamma, beta, dy) of shape (n, m) (also used by bench/)."""
    rng = np.random.default_rng(0)
    x = (2 * rng.standard_normal((n, m)) + 1).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, m).astype(np.float32)
    beta = rng.standard_normal(m, dtype=np.float32)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    return x, gamma, beta, dy


def bn_reference(x, gamma, beta, dy, eps=1e-5):
    """float64 (y, dx, dgamma, dbeta) of training-mode batch norm (also used by bench/)."""
    x = x.astype(np.float64)
    n = x.shape[0]
    mean = x.mean(0)
    invstd = 1 / np.sqrt(((x - mean) ** 2).mean(0) + eps)
    xhat = (x - mean) * invstd
    dbeta = dy.sum(0, dtype=np.float64)
    dgamma = (dy * xhat).sum(0)
    dx = gamma * invstd * (dy - dbeta / n - xhat * dgamma / n)
    return xhat * gamma + beta, dx, dgamma, dbeta


def batchnorm_forward_case(shape):
    def build(ctx):
        need_kernel("batchnorm_forward_train")
        n, m = shape
        x, gamma, beta, dy = bn_data(n, m)
        y_ref = bn_reference(x, gamma, beta, dy)[0]
        check = lambda y: close(y, y_ref, 1e-4, 1e-4, "y")  # noqa: E731
        rm, rv = np.zeros(m, np.float32), np.ones(m, np.float32)
        impls = [Impl("fastdl", lambda: K.batchnorm_forward_train(x, gamma, beta, rm, rv)[0], check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx, tg, tb, trm, trv = map(t.from_numpy, (x, gamma, beta, rm.copy(), rv.copy()))
            impls.append(Impl("torch", lambda: t.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True),
                              lambda r: check(r.numpy())))

        def numpy_bn():
            mean = x.mean(0)
            var = x.var(0)
            return (x - mean) * (gamma / np.sqrt(var + 1e-5)) + beta

        impls.append(Impl("numpy", numpy_bn, check))
        notes.append("train-mode forward with running-stat update (numpy: no running stats)")
        return Prepared(impls, 2.0 * x.nbytes, "GB/s", notes)

    return Case(f"batchnorm train fwd {_id(shape)}", "batchnorm", build)


def batchnorm_backward_case(shape):
    def build(ctx):
        need_kernel("batchnorm_forward_train", "batchnorm_backward")
        n, m = shape
        x, gamma, beta, dy = bn_data(n, m)
        _, dx_r, dg_r, db_r = bn_reference(x, gamma, beta, dy)

        def check(r):
            for a, e, what in zip(r, (dx_r, dg_r, db_r), ("dx", "dgamma", "dbeta")):
                close(a, e, 1e-3, 1e-3, what)

        _, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, None, None)
        impls = [Impl("fastdl", lambda: K.batchnorm_backward(dy, x, gamma, mean, invstd), check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx = t.from_numpy(x).requires_grad_()
            tg = t.from_numpy(gamma).requires_grad_()
            tb = t.from_numpy(beta).requires_grad_()
            ty = t.nn.functional.batch_norm(tx, None, None, tg, tb, training=True)
            tdy = t.from_numpy(dy)
            impls.append(Impl("torch", lambda: t.autograd.grad(ty, (tx, tg, tb), tdy, retain_graph=True),
                              lambda r: check([a.numpy() for a in r])))

        def numpy_bwd():
            xhat = (x - mean) * invstd
            dbeta = dy.sum(0)
            dgamma = (dy * xhat).sum(0)
            dx = (gamma * invstd) * (dy - dbeta / n - xhat * (dgamma / n))
            return dx, dgamma, dbeta

        impls.append(Impl("numpy", numpy_bwd, check))
        return Prepared(impls, 3.0 * x.nbytes, "GB/s", notes)

    return Case(f"batchnorm bwd {_id(shape)}", "batchnorm", build)


# ---------------------------------------------------------------- optimizer
ADAM = (1e-3, 0.9, 0.999, 1e-8, 5)  # lr, beta1, beta2, eps, the step number validated


def adam_problem(n):
    """Params, grads and a mid-training Adam state, and a check of one step from them
    against the float64 formula (PyTorch's Adam)."""
    lr, b1, b2, eps, step = ADAM
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    m0 = 0.1 * rng.standard_normal(n, dtype=np.float32)
    v0 = rng.random(n, dtype=np.float32) * 0.01
    m_ref = b1 * m0.astype(np.float64) + (1 - b1) * g
    v_ref = b2 * v0.astype(np.float64) + (1 - b2) * g.astype(np.float64) ** 2
    p_ref = p0 - lr * (m_ref / (1 - b1**step)) / (np.sqrt(v_ref / (1 - b2**step)) + eps)

    def check_state(p, m, v):
        close(p, p_ref, 1e-6, 1e-3 * lr, "params")  # the step right to 0.1% of lr
        close(m, m_ref, 1e-4, 1e-7, "exp_avg")
        close(v, v_ref, 1e-4, 1e-9, "exp_avg_sq")

    return p0, g, m0, v0, check_state


def adam_case(n):
    def build(ctx):
        need_kernel("adam_step")
        p0, g, m0, v0, check_state = adam_problem(n)
        lr, b1, b2, eps, step = ADAM

        # fastdl: validated on the first step from the known state, then timed in place
        fp, fm, fv = p0.copy(), m0.copy(), v0.copy()

        def fastdl_step():
            K.adam_step(fp, g, fm, fv, lr=lr, step=step)

        def fastdl_validate():
            fastdl_step()
            check_state(fp, fm, fv)

        impls = [Impl("fastdl", fastdl_step, validate=fastdl_validate)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tp = t.from_numpy(p0.copy()).requires_grad_()
            tp.grad = t.from_numpy(g)
            try:
                opt = t.optim.Adam([tp], lr=lr, betas=(b1, b2), eps=eps, fused=True)
                notes.append("torch: Adam(fused=True)")
            except (RuntimeError, ValueError, TypeError):
                opt = t.optim.Adam([tp], lr=lr, betas=(b1, b2), eps=eps)
                notes.append("torch: Adam (default foreach implementation)")
            opt.state[tp] = {"step": t.tensor(float(step - 1)), "exp_avg": t.from_numpy(m0.copy()),
                             "exp_avg_sq": t.from_numpy(v0.copy())}

            def torch_validate():
                opt.step()
                st = opt.state[tp]
                check_state(tp.detach().numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy())

            impls.append(Impl("torch", opt.step, validate=torch_validate))
        np_p, np_m, np_v = p0.copy(), m0.copy(), v0.copy()
        tmp = np.empty_like(np_p)
        c1, c2 = 1 - b1**step, 1 - b2**step

        def numpy_step():  # in place with one scratch buffer, the best numpy can do
            np.multiply(np_m, b1, out=np_m)
            np.multiply(g, 1 - b1, out=tmp)
            np.add(np_m, tmp, out=np_m)
            np.multiply(np_v, b2, out=np_v)
            np.multiply(g, g, out=tmp)
            np.multiply(tmp, 1 - b2, out=tmp)
            np.add(np_v, tmp, out=np_v)
            np.divide(np_v, c2, out=tmp)
            np.sqrt(tmp, out=tmp)
            np.add(tmp, eps, out=tmp)
            np.divide(np_m, tmp, out=tmp)
            np.multiply(tmp, lr / c1, out=tmp)
            np.subtract(np_p, tmp, out=np_p)

        def numpy_validate():
            numpy_step()
            check_state(np_p, np_m, np_v)

        impls.append(Impl("numpy", numpy_step, validate=numpy_validate))
        notes.append("bytes: params, grads, exp_avg, exp_avg_sq read; params, exp_avg, exp_avg_sq written")
        return Prepared(impls, 7.0 * 4 * n, "GB/s", notes)

    return Case(f"adam step {n / 1e6:g}M params" if n >= 10**6 else f"adam step {n} params", "optim", build)


# ---------------------------------------------------------------- dropout and maxout
def dropout_case(shape, p=0.5):
    def build(ctx):
        need_kernel("dropout_forward")
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32) + 3  # no zeros: kept elements are visible
        size = x.size
        tol = 6 * np.sqrt(p * (1 - p) / size)  # 6 sigma on the kept fraction

        def check_values(y):
            y = np.asarray(y)
            kept = y != 0
            frac = kept.mean()
            assert abs(frac - (1 - p)) <= tol, f"kept fraction {frac:.4f}, expected {1 - p:.4f}"
            close(y[kept], x[kept] / (1 - p), 1e-6, 0, "kept values")

        def check_fastdl(r):
            y, mask = r
            keep = np.unpackbits(mask, bitorder="little")[:size].reshape(shape).astype(bool)
            close(y, np.where(keep, x / (1 - p), 0), 1e-6, 0, "y vs mask")
            check_values(y)

        out = np.empty_like(x)
        step = [0]

        def fastdl_dropout():
            step[0] += 1  # a fresh mask each call, as in training
            return K.dropout_forward(x, p, 1234, step[0], out=out)

        impls = [Impl("fastdl", fastdl_dropout, check_fastdl)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx = t.from_numpy(x)
            impls.append(Impl("torch", lambda: t.nn.functional.dropout(tx, p, training=True),
                              lambda r: check_values(r.numpy())))
        gen = np.random.default_rng(1)
        impls.append(Impl("numpy", lambda: x * (gen.random(shape, dtype=np.float32) >= p) / np.float32(1 - p),
                          check_values))
        notes.append("fastdl writes y and a bit-packed mask (Philox); torch keeps no mask; bytes: x read, y and "
                     "the packed mask written")
        return Prepared(impls, 2.0 * x.nbytes + size / 8, "GB/s", notes)

    return Case(f"dropout fwd p={p} {_id(shape)}", "dropout", build)


def dense_maxout_case(shape):
    def build(ctx):
        need_kernel("dense_maxout_forward")
        n, k, units, pieces = shape
        x, w, b = dense_data(n, k, units * pieces)
        rows = row_sample(n)
        z = x[rows].astype(np.float64) @ w + b
        y_ref = z.reshape(len(rows), units, pieces).max(-1)
        check = lambda y: close(np.asarray(y)[rows], y_ref, 1e-3, 1e-3, "y")  # noqa: E731

        def check_fastdl(r):
            y, arg = r
            check(y)
            # the recorded piece must hold the max (ties: any maximal piece is accepted)
            zr = z.reshape(len(rows), units, pieces)
            picked = np.take_along_axis(zr, np.asarray(arg)[rows][..., None].astype(np.intp), -1)[..., 0]
            close(picked, y_ref, 1e-3, 1e-3, "z at argmax")

        impls = [Impl("fastdl", lambda: K.dense_maxout_forward(x, w, b, pieces), check_fastdl)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx, tw, tb = map(t.from_numpy, (x, w, b))
            impls.append(Impl("torch", lambda: t.addmm(tb, tx, tw).view(n, units, pieces).max(-1),
                              lambda r: check(r[0].numpy())))
        impls.append(Impl("numpy", lambda: (x @ w + b).reshape(n, units, pieces).max(-1), check))
        notes.append("adjacent-column pieces; y and argmax returned (torch: values and indices)")
        return Prepared(impls, 2.0 * n * k * units * pieces, "GFLOP/s", notes)

    return Case(f"dense_maxout fwd {_id(shape[:2])}x{shape[2]}x{shape[3]}", "maxout", build)
