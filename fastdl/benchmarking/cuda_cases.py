"""The GPU set (``--device cuda``): fastdl's Numba CUDA kernels against PyTorch CUDA.

Every timed call ends with a device synchronize, so a time is the kernel's, not its
launch's. Results are copied back and checked against float64 references before timing.
"""

import sys
import time

import numpy as np

from . import peers
from .cases import ADAM, Case, Prepared, Skip, adam_problem, close, dense_data, row_sample
from .timing import Impl


_warned: list = []


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
    """PyTorch when it can run as the peer, FP32 with TF32 off, or None with a note. The
    peer runs on the GPU; under Numba's simulator (the verification script's dry run)
    it runs on the CPU, so the comparison's code runs there too (its times mean nothing)."""
    t = peers.torch()
    if t is None or peer_device() is None:
        notes.append("PyTorch with CUDA not available: torch column skipped")
        return None
    t.backends.cuda.matmul.allow_tf32 = False  # FP32 against FP32
    return t


def peer_device():
    """Where the torch peer runs: "cuda", "cpu" under the simulator, or None."""
    t = peers.torch()
    if t is None:
        return None
    if t.cuda.is_available():
        return "cuda"
    import fastdl.cuda

    return "cpu" if fastdl.cuda.is_simulator() else None


def _to_peer(t, a):
    return t.from_numpy(np.ascontiguousarray(a)).to(peer_device())


def _synced(cuda, fn):
    """fn, then wait for the device: numba's synchronize waits for the whole context,
    which PyTorch shares (the primary context), so it serves both."""
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
        ta, tb = _to_peer(t, a), _to_peer(t, b)
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


def dense_forward_case(shape):
    def build(ctx):
        cuda, gk = require_gpu()
        n, k, m = shape
        x, w, b = dense_data(n, k, m)
        rows = row_sample(n)
        ref = np.maximum(x[rows].astype(np.float64) @ w + b, 0)
        check = lambda y: close(_host(y)[rows], ref, 1e-3, 1e-3, "y")  # noqa: E731
        dx, dw, dbias = map(cuda.to_device, (x, w, b))
        out = cuda.device_array((n, m), np.float32)
        impls = [Impl("fastdl", _synced(cuda, lambda: gk.dense_forward(dx, dw, dbias, "relu", out=out)), check)]
        notes: list[str] = []
        t = torch_cuda(notes)
        if t is not None:
            tx, tw, tb = (_to_peer(t, a) for a in (x, w, b))
            impls.append(Impl("torch", _synced(cuda, lambda: t.relu(t.addmm(tb, tx, tw))), check))
        return Prepared(impls, 2.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"cuda dense fwd relu {'x'.join(map(str, shape))}", "dense", build)


def dense_backward_case(shape):
    def build(ctx):
        cuda, gk = require_gpu()
        n, k, m = shape
        x, w, b = dense_data(n, k, m)
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
        notes: list[str] = []
        t = torch_cuda(notes)
        if t is not None:
            tx, tw, tb = (_to_peer(t, a).requires_grad_() for a in (x, w, b))
            ty = t.relu(t.addmm(tb, tx, tw))
            tdy = _to_peer(t, dy)
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
        notes: list[str] = []
        t = torch_cuda(notes)
        if t is not None:
            tx = _to_peer(t, logits).requires_grad_()
            tl = _to_peer(t, labels)

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
        notes: list[str] = []
        t = torch_cuda(notes)
        if t is not None:
            ta, tb = _to_peer(t, a), _to_peer(t, b)
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
        notes: list[str] = []
        t = torch_cuda(notes)
        if t is not None:
            tp = _to_peer(t, p0.copy()).requires_grad_()
            tp.grad = _to_peer(t, g)
            fused = peer_device() == "cuda"  # torch's fused Adam; the CPU peer of a dry run has foreach
            opt = t.optim.Adam([tp], lr=lr, betas=(b1, b2), eps=eps, fused=fused)
            opt.state[tp] = {"step": t.tensor(float(step - 1), device=peer_device()),
                             "exp_avg": _to_peer(t, m0.copy()), "exp_avg_sq": _to_peer(t, v0.copy())}
            t_step = _synced(cuda, opt.step)

            def t_validate():
                t_step()
                st = opt.state[tp]
                check_state(_host(tp.detach()), _host(st["exp_avg"]), _host(st["exp_avg_sq"]))

            impls.append(Impl("torch", t_step, validate=t_validate))
            notes.append(f"torch: Adam(fused={fused})")
        return Prepared(impls, 7.0 * 4 * n, "GB/s", notes)

    return Case(f"cuda adam step {n / 1e6:g}M params" if n >= 10**6 else f"cuda adam step {n} params",
                "optim", build)


def dense_fwd_bwd_case(n):
    """A relu Dense layer's forward and backward at n x n x n (the GPU goal at 4096):
    fastdl's dense_forward + dense_backward against torch's addmm + relu + autograd
    (cuBLAS, TF32 off), each into kept buffers."""
    def build(ctx):
        cuda, gk = require_gpu()
        x, w, b = dense_data(n, n, n)
        dy = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        rows, cols = row_sample(n, 64), row_sample(n, 64)
        z = x[rows].astype(np.float64) @ w + b
        y_ref = np.maximum(z, 0)
        # the backward's reference follows the relu mask of the y it was given
        dx_, dw_, db_, dy_ = map(cuda.to_device, (x, w, b, dy))
        y = cuda.device_array((n, n), np.float32)
        grads = tuple(cuda.device_array(s, np.float32) for s in ((n, n), (n, n), (n,)))

        def fastdl_step():
            gk.dense_forward(dx_, dw_, db_, "relu", out=y)
            return gk.dense_backward(dy_, dx_, dw_, "relu", y=y, out=grads)

        def check(r):
            yh = _host(y)
            close(yh[rows], y_ref, 1e-3, 1e-2, "y")
            dz = dy.astype(np.float64) * (yh > 0)
            gx, gw, gb = (_host(a) for a in r[:3])
            close(gx[rows], dz[rows] @ w.T.astype(np.float64), 1e-3, 1e-2, "dx")
            close(gw[:, cols], x.T.astype(np.float64) @ dz[:, cols], 1e-3, 1e-1, "dw")
            close(gb, dz.sum(0), 1e-3, 1e-1, "db")

        impls = [Impl("fastdl", _synced(cuda, fastdl_step), check)]
        notes: list[str] = []
        t = torch_cuda(notes)
        if t is not None:
            tx, tw, tb = (_to_peer(t, a).requires_grad_() for a in (x, w, b))
            tdy = _to_peer(t, dy)

            def torch_step():
                ty = t.relu(t.addmm(tb, tx, tw))
                return t.autograd.grad(ty, (tx, tw, tb), tdy)

            def torch_check(r):
                ty = t.relu(t.addmm(tb, tx, tw)).detach()
                close(_host(ty)[rows], y_ref, 1e-3, 1e-2, "torch y")

            impls.append(Impl("torch", _synced(cuda, torch_step), torch_check))
            notes.append("torch: relu(addmm) + autograd.grad, FP32 with TF32 off (cuBLAS)")
        return Prepared(impls, 3 * 2.0 * n**3, "GFLOP/s", notes)

    return Case(f"cuda dense relu fwd+bwd {n}^3", "dense", build)


#: The GPU goals' networks: (layer sizes, batch). Hidden layers relu, the last linear,
#: softmax cross-entropy, Adam (lr 1e-3), FP32.
TRAIN_STEP_GOALS = (((784, 64, 64, 64, 64, 10), 256), ((784, 1024, 1024, 10), 128),
                    ((784, 4096, 4096, 4096, 10), 4096))


def network_name(sizes):
    """784-64x4-10 for (784, 64, 64, 64, 64, 10)."""
    hidden = sizes[1:-1]
    if hidden and len(set(hidden)) == 1:
        return f"{sizes[0]}-{hidden[0]}x{len(hidden)}-{sizes[-1]}"
    return "-".join(map(str, sizes))


def _torch_mlp(t, sizes, flat, lr):
    """torch's Sequential of Linear + ReLU with fastdl's initial weights (flat layout:
    w (in, out) then b per layer), fused Adam on the GPU."""
    layers, o = [], 0
    for i, (din, dout) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = t.nn.Linear(din, dout)
        with t.no_grad():
            lin.weight.copy_(t.from_numpy(flat[o:o + din * dout].reshape(din, dout).T.copy()))
            lin.bias.copy_(t.from_numpy(flat[o + din * dout:o + din * dout + dout].copy()))
        o += din * dout + dout
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(t.nn.ReLU())
    model = t.nn.Sequential(*layers).to(peer_device())
    opt = t.optim.Adam(model.parameters(), lr=lr, fused=peer_device() == "cuda")
    return model, opt


def _torch_flat_grads(model):
    """The torch model's gradients in fastdl's flat layout."""
    parts = []
    for m in model:
        if hasattr(m, "weight"):
            parts += [_host(m.weight.grad).T.ravel(), _host(m.bias.grad)]
    return np.concatenate(parts)


def train_step_case(sizes, batch, path="sequential"):
    """One training step (forward, softmax cross-entropy, backward, Adam) of an MLP:
    fastdl's Sequential(device="cuda").train_step (path="sequential", the per-layer
    kernels) or FusedMLPStep + the network's Adam over the same buffers (path="fused",
    what a qualifying network's step runs), against torch with the same initial weights,
    both synchronised. Validated first: the first step's loss and every gradient equal
    torch's (or a float64 numpy reference where torch is absent)."""
    if path not in ("sequential", "fused"):
        raise ValueError(f"path: expected 'sequential' or 'fused', got {path!r}")

    def build(ctx):
        cuda, gk = require_gpu()
        import fastdl
        from fastdl import Dense, Sequential

        rng = np.random.default_rng(0)
        xh = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
        yh = rng.integers(0, sizes[-1], batch).astype(np.int64)
        layers = [Dense(din, dout, activation="relu" if i < len(sizes) - 2 else "linear")
                  for i, (din, dout) in enumerate(zip(sizes[:-1], sizes[1:]))]
        model = Sequential(layers, seed=0, device="cuda")
        model.compile(optimizer=fastdl.optim.Adam(1e-3), loss="softmax_cross_entropy")
        flat0 = _host(model.flat_params).copy()
        xd, yd = cuda.to_device(xh), cuda.to_device(yh)
        notes: list[str] = []
        if path == "fused":
            from fastdl.cuda.fused_step import FusedMLPStep

            ok = FusedMLPStep.supports(sizes[0], sizes[1:], "relu")
            if not ok:
                raise Skip(f"the fused step does not take this network: {ok.reason}")
            step = FusedMLPStep(sizes[0], sizes[1:], "relu", params=model.flat_params, grads=model.flat_grads)
            gradients = lambda: step.train(xd, yd)  # noqa: E731

            def fastdl_step():
                loss = step.train(xd, yd)
                model.apply_gradients()
                return loss
            notes.append("fastdl: FusedMLPStep.train + the network's Adam (5 + 1 launches)")
        else:
            gradients = lambda: model.compute_gradients(xd, yd)  # noqa: E731
            fastdl_step = lambda: model.train_step(xd, yd)  # noqa: E731
            notes.append("fastdl: Sequential(device='cuda').train_step (per-layer kernels)")

        t = torch_cuda(notes)
        if t is not None:
            tmodel, topt = _torch_mlp(t, sizes, flat0, 1e-3)
            tx, ty = _to_peer(t, xh), _to_peer(t, yh)

            def torch_step():
                topt.zero_grad(set_to_none=True)
                loss = t.nn.functional.cross_entropy(tmodel(tx), ty)
                loss.backward()
                topt.step()
                return loss

            tmodel.zero_grad(set_to_none=True)
            tloss = t.nn.functional.cross_entropy(tmodel(tx), ty)
            tloss.backward()
            want_loss, want_grads = float(tloss.item()), _torch_flat_grads(tmodel)
            tmodel.zero_grad(set_to_none=True)
            oracle = "torch"
        else:
            want_loss, want_grads = _numpy_mlp_gradients(sizes, flat0, xh, yh)
            oracle = "float64 numpy"

        def validate():
            # the first step, from the initial weights: loss and every gradient
            loss = gradients()
            cuda.synchronize()
            close(loss, want_loss, 1e-4, 1e-5, f"loss (against {oracle})")
            got = _host(model.flat_grads)
            scale = float(np.abs(want_grads).max()) or 1.0
            close(got, want_grads, 1e-3, 1e-4 * scale, f"gradients (against {oracle})")

        impls = [Impl("fastdl", _synced(cuda, fastdl_step), validate=validate)]
        if t is not None:
            impls.append(Impl("torch", _synced(cuda, torch_step)))
            notes.append("torch: nn.Sequential(Linear, ReLU, ...) + cross_entropy + Adam("
                         f"fused={peer_device() == 'cuda'}), TF32 off")
        return Prepared(impls, None, None, notes)

    label = "Sequential" if path == "sequential" else "FusedMLPStep"
    return Case(f"cuda train_step {network_name(sizes)} b{batch} ({label})", "train_step", build)


def _numpy_mlp_gradients(sizes, flat, x, labels):
    """Loss and flat gradients of the relu MLP in float64 (the oracle without torch)."""
    ws, o = [], 0
    for din, dout in zip(sizes[:-1], sizes[1:]):
        ws.append((flat[o:o + din * dout].reshape(din, dout).astype(np.float64),
                   flat[o + din * dout:o + din * dout + dout].astype(np.float64)))
        o += din * dout + dout
    hs = [x.astype(np.float64)]
    for i, (w, b) in enumerate(ws):
        z = hs[-1] @ w + b
        hs.append(np.maximum(z, 0) if i < len(ws) - 1 else z)
    z = hs[-1] - hs[-1].max(1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(1, keepdims=True))
    n = len(labels)
    loss = -lp[np.arange(n), labels].mean()
    d = np.exp(lp)
    d[np.arange(n), labels] -= 1
    d /= n
    grads: list = []
    for i in range(len(ws) - 1, -1, -1):
        w, _ = ws[i]
        grads = [(hs[i].T @ d).ravel(), d.sum(0)] + grads
        d = (d @ w.T) * (hs[i] > 0) if i else None
    return loss, np.concatenate(grads)


def cuda_cases(sizes):
    small, big = sizes.dense_shapes[0], sizes.dense_shapes[-1]
    return [dense_forward_case(s) for s in dict.fromkeys((small, big))] + [dense_backward_case(big),
            gemm_case(sizes.gpu_gemm_case_n),
            softmax_ce_case(sizes.ce_shape), adam_case(sizes.adam_n)]
