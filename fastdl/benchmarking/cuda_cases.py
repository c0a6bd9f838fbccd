"""The GPU set (``--device cuda``): fastdl's Numba CUDA kernels against PyTorch CUDA.

Every timed call ends with a device synchronize, so a time is the kernel's, not its
launch's. Results are copied back and checked against float64 references before timing.
"""

import sys
import time

import numpy as np

from . import peers
from .cases import ADAM, Case, Prepared, Skip, adam_problem, close, row_sample
from .timing import Impl


_warned = []


def gpu_name(cuda):
    try:
        name = cuda.get_current_device().name
    except AttributeError:  # the simulator has no devices to name
        return "Numba CUDA simulator"
    return name.decode() if isinstance(name, bytes) else str(name)


def require_gpu():
    """(numba.cuda, fastdl.cuda.kernels), or RuntimeError saying why the GPU set cannot run."""
    try:
        import fastdl.cuda as fcuda
    except ImportError:
        raise RuntimeError("--device cuda: this build of fastdl has no GPU kernels (fastdl.cuda is "
                           "missing)") from None
    try:
        cuda = fcuda.require()
    except (ImportError, RuntimeError) as e:
        raise RuntimeError(f"--device cuda: {e}") from None
    if fcuda.is_simulator() and not _warned:
        _warned.append(True)
        print("warning: NUMBA_ENABLE_CUDASIM=1: the GPU kernels run on Numba's CPU simulator; "
              "times mean nothing", file=sys.stderr)
    return cuda, fcuda.kernels


def torch_cuda(notes):
    t = peers.torch()
    if t is None or not t.cuda.is_available():
        notes.append("PyTorch with CUDA not available: torch column skipped")
        return None
    t.backends.cuda.matmul.allow_tf32 = False  # FP32 against FP32
    return t


def _synced(cuda, fn):
    def call():
        r = fn()
        cuda.synchronize()
        return r

    return call


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a.cpu())


def gpu_peak(cuda, gk, n, copy_bytes, repeats):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    da, db, dout = cuda.to_device(a), cuda.to_device(b), cuda.device_array((n, n), np.float32)
    fns = {"fastdl": _synced(cuda, lambda: gk.matmul(da, db, out=dout))}
    t = peers.torch()
    if t is not None and t.cuda.is_available():
        t.backends.cuda.matmul.allow_tf32 = False
        ta, tb = t.from_numpy(a).cuda(), t.from_numpy(b).cuda()
        tout = t.empty_like(ta)
        fns["torch"] = _synced(cuda, lambda: t.matmul(ta, tb, out=tout))

    def best(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    by = {k: 2.0 * n**3 / best(f) / 1e9 for k, f in fns.items()}
    m = max(1, copy_bytes // 4)
    src, dst = cuda.to_device(np.ones(m, np.float32)), cuda.device_array(m, np.float32)
    copy = 2.0 * m * 4 / best(_synced(cuda, lambda: dst.copy_to_device(src))) / 1e9
    return {"gemm_gflops": max(by.values()), "gemm_gflops_by_library": {k: round(v, 1) for k, v in by.items()},
            "gemm_n": n, "copy_gbs": copy, "copy_bytes": m * 4, "repeats": repeats,
            "how": (f"GEMM: best of {repeats} float32 {n}^3 products on the GPU with {', '.join(by)}, "
                    f"highest taken; copy: best of {repeats} device-to-device copies of {m * 4 / 2**20:g} "
                    f"MiB, read + written bytes counted")}


def _dense_data(n, k, m):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    return x, w, b


def dense_forward_case(shape):
    def build(ctx):
        cuda, gk = require_gpu()
        n, k, m = shape
        x, w, b = _dense_data(n, k, m)
        rows = row_sample(n)
        ref = np.maximum(x[rows].astype(np.float64) @ w + b, 0)
        check = lambda y: close(_host(y)[rows], ref, 1e-3, 1e-3, "y")  # noqa: E731
        dx, dw, dbias = map(cuda.to_device, (x, w, b))
        out = cuda.device_array((n, m), np.float32)
        impls = [Impl("fastdl", _synced(cuda, lambda: gk.dense_forward(dx, dw, dbias, "relu", out=out)), check)]
        notes = []
        t = torch_cuda(notes)
        if t is not None:
            tx, tw, tb = (t.from_numpy(a).cuda() for a in (x, w, b))
            impls.append(Impl("torch", _synced(cuda, lambda: t.relu(t.addmm(tb, tx, tw))), check))
        return Prepared(impls, 2.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"cuda dense fwd relu {'x'.join(map(str, shape))}", "dense", build)


def dense_backward_case(shape):
    def build(ctx):
        cuda, gk = require_gpu()
        n, k, m = shape
        x, w, b = _dense_data(n, k, m)
        dy = np.random.default_rng(1).standard_normal((n, m), dtype=np.float32)
        y = np.maximum(x @ w + b, 0)
        rows, cols = row_sample(n), row_sample(m, 128)
        dz = dy.astype(np.float64) * (y > 0)
        dx_ref, dw_ref, db_ref = dz[rows] @ w.T.astype(np.float64), x.T.astype(np.float64) @ dz[:, cols], dz.sum(0)

        def check(r):
            gx, gw, gb = (_host(a) for a in r[:3])
            close(gx[rows], dx_ref, 1e-3, 1e-2, "dx")
            close(gw[:, cols], dw_ref, 1e-3, 1e-2, "dw")
            close(gb, db_ref, 1e-3, 1e-2, "db")

        ddy, dx_, dw_, dyy = map(cuda.to_device, (dy, x, w, y))
        impls = [Impl("fastdl", _synced(cuda, lambda: gk.dense_backward(ddy, dx_, dw_, "relu", y=dyy)), check)]
        notes = []
        t = torch_cuda(notes)
        if t is not None:
            tx, tw, tb = (t.from_numpy(a).cuda().requires_grad_() for a in (x, w, b))
            ty = t.relu(t.addmm(tb, tx, tw))
            tdy = t.from_numpy(dy).cuda()
            impls.append(Impl("torch", _synced(cuda, lambda: t.autograd.grad(ty, (tx, tw, tb), tdy,
                                                                             retain_graph=True)), check))
        return Prepared(impls, 4.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"cuda dense bwd relu {'x'.join(map(str, shape))}", "dense", build)


def softmax_ce_case(shape):
    def build(ctx):
        cuda, gk = require_gpu()
        if not hasattr(gk, "softmax_cross_entropy"):
            raise Skip("fastdl.cuda.kernels.softmax_cross_entropy is not in this build")
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
            close(float(r[0]), loss_ref, 1e-4, 0, "loss")
            close(_host(r[1]), grad_ref, 1e-3, 1e-6 / n, "dlogits")

        dl, dlab = cuda.to_device(logits), cuda.to_device(labels)
        impls = [Impl("fastdl", _synced(cuda, lambda: gk.softmax_cross_entropy(dl, dlab)), check)]
        notes = []
        t = torch_cuda(notes)
        if t is not None:
            tx = t.from_numpy(logits).cuda().requires_grad_()
            tl = t.from_numpy(labels).cuda()

            def torch_ce():
                loss = t.nn.functional.cross_entropy(tx, tl)
                return loss.item(), t.autograd.grad(loss, tx)[0]

            impls.append(Impl("torch", _synced(cuda, torch_ce), check))
        return Prepared(impls, 2.0 * logits.nbytes + labels.nbytes, "GB/s", notes)

    return Case(f"cuda softmax-CE fwd+bwd {n_c(shape)}", "losses", build)


def n_c(shape):
    return "x".join(map(str, shape))


def gemm_case(n):
    def build(ctx):
        cuda, gk = require_gpu()
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        rows = row_sample(n, 64)
        ref = a[rows].astype(np.float64) @ b
        check = lambda c: close(_host(c)[rows], ref, 1e-3, 1e-2, "a @ b")  # noqa: E731
        da, db, dout = cuda.to_device(a), cuda.to_device(b), cuda.device_array((n, n), np.float32)
        impls = [Impl("fastdl", _synced(cuda, lambda: gk.matmul(da, db, out=dout)), check)]
        notes = []
        t = torch_cuda(notes)
        if t is not None:
            ta, tb = t.from_numpy(a).cuda(), t.from_numpy(b).cuda()
            impls.append(Impl("torch", _synced(cuda, lambda: ta @ tb), check))
        return Prepared(impls, 2.0 * n**3, "GFLOP/s", notes)

    return Case(f"cuda gemm {n}^3", "gemm", build)


def adam_case(n):
    def build(ctx):
        cuda, gk = require_gpu()
        if not hasattr(gk, "adam_step"):
            raise Skip("fastdl.cuda.kernels.adam_step is not in this build")
        p0, g, m0, v0, check_state = adam_problem(n)
        lr, b1, b2, eps, step = ADAM
        dp, dg, dm, dv = map(cuda.to_device, (p0, g, m0, v0))
        fd_step = _synced(cuda, lambda: gk.adam_step(dp, dg, dm, dv, lr=lr, step=step))

        def fd_validate():
            fd_step()
            check_state(dp.copy_to_host(), dm.copy_to_host(), dv.copy_to_host())

        impls = [Impl("fastdl", fd_step, validate=fd_validate)]
        notes = []
        t = torch_cuda(notes)
        if t is not None:
            tp = t.from_numpy(p0.copy()).cuda().requires_grad_()
            tp.grad = t.from_numpy(g).cuda()
            opt = t.optim.Adam([tp], lr=lr, betas=(b1, b2), eps=eps, fused=True)
            opt.state[tp] = {"step": t.tensor(float(step - 1), device="cuda"),
                             "exp_avg": t.from_numpy(m0.copy()).cuda(), "exp_avg_sq": t.from_numpy(v0.copy()).cuda()}
            t_step = _synced(cuda, opt.step)

            def t_validate():
                t_step()
                st = opt.state[tp]
                check_state(_host(tp.detach()), _host(st["exp_avg"]), _host(st["exp_avg_sq"]))

            impls.append(Impl("torch", t_step, validate=t_validate))
            notes.append("torch: Adam(fused=True)")
        return Prepared(impls, 7.0 * 4 * n, "GB/s", notes)

    return Case(f"cuda adam step {n / 1e6:g}M params" if n >= 10**6 else f"cuda adam step {n} params",
                "optim", build)


def cuda_cases(sizes):
    small, big = sizes.dense_shapes[0], sizes.dense_shapes[-1]
    return [dense_forward_case(s) for s in dict.fromkeys((small, big))] + [dense_backward_case(big),
            gemm_case(sizes.gpu_gemm_case_n),
            softmax_ce_case(sizes.ce_shape), adam_case(sizes.adam_n)]
