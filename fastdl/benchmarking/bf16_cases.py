"""The bf16 cases: fastdl with precision="bf16" against fastdl fp32 and PyTorch's bf16.

They run only where the CPU has bf16 units (fastdl's path is "amx" or "avx512_bf16");
elsewhere precision="bf16" is the portable path, which shows nothing about bf16 speed,
and the cases are skipped with a note. "fastdl" is the bf16 column; "fastdl fp32" is a
peer like the others, so its ratio is the bf16 speed-up.
"""

import numpy as np

import fastdl
from fastdl import kernels as K

from .cases import Case, Prepared, Skip, dense_data, row_sample, torch_or_note
from .timing import Impl


def need_bf16_units():
    isa = fastdl.get_isa()
    if isa not in ("amx", "avx512_bf16"):
        raise Skip(f"no bf16 units on this CPU (isa {isa}): precision='bf16' would run the portable path")


def within_bf16(what, got, ref, bound, bf16_out=False):
    """got is ref up to bf16 operands: each product within 2**-7 of the exact one, relative
    (bound: the sum of the products' magnitudes), plus fp32 accumulation; bf16_out: and
    the result itself rounded to bf16 (PyTorch's bf16 and autocast outputs)."""
    err = np.abs(np.asarray(got, np.float64) - ref)
    tol = 2.0**-7 * bound + 1e-4 + bf16_out * 2.0**-8 * np.abs(ref)
    assert np.all(err <= tol), f"{what} off by {err.max():.3g} (bf16 bound {tol.max():.3g})"


def bf16_matmul_case(n):
    def build(ctx):
        need_bf16_units()
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        rows = row_sample(n, 64)
        ref = a[rows].astype(np.float64) @ b
        bound = np.abs(a[rows]).astype(np.float64) @ np.abs(b)
        def check(c, bf16_out=False):
            within_bf16("a @ b", np.asarray(c)[rows], ref, bound, bf16_out)


        out = np.empty((n, n), np.float32)
        impls = [Impl("fastdl", lambda: K.matmul(a, b, out=out, precision="bf16"), check),
                 Impl("fastdl fp32", lambda: K.matmul(a, b, out=out), check)]
        notes = ["fastdl: fp32 operands rounded to bf16 as they are packed, fp32 result; "
                 "torch bf16: bf16 tensors in and out"]
        t = torch_or_note(notes)
        if t is not None:
            ta, tb = t.from_numpy(a).bfloat16(), t.from_numpy(b).bfloat16()
            impls.append(Impl("torch bf16", lambda: t.matmul(ta, tb), lambda r: check(r.float().numpy(), True)))
        return Prepared(impls, 2.0 * n**3, "GFLOP/s", notes)

    return Case(f"bf16 matmul {n}^3", "bf16", build)


def bf16_dense_forward_case(shape):
    def build(ctx):
        need_bf16_units()
        n, k, m = shape
        x, w, b = dense_data(n, k, m)
        rows = row_sample(n)
        ref = np.maximum(x[rows].astype(np.float64) @ w + b, 0)
        bound = np.abs(x[rows]).astype(np.float64) @ np.abs(w)  # relu moves nothing further
        def check(y, bf16_out=False):
            within_bf16("y", np.asarray(y)[rows], ref, bound, bf16_out)

        out = np.empty((n, m), np.float32)
        impls = [Impl("fastdl", lambda: K.dense_forward(x, w, b, "relu", out=out, precision="bf16"), check),
                 Impl("fastdl fp32", lambda: K.dense_forward(x, w, b, "relu", out=out), check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tx, tw, tb = map(t.from_numpy, (x, w, b))

            def autocast():
                with t.autocast("cpu", dtype=t.bfloat16):
                    return t.relu(t.addmm(tb, tx, tw))

            impls.append(Impl("torch autocast", autocast, lambda r: check(r.float().numpy(), True)))
        return Prepared(impls, 2.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"bf16 dense fwd relu {'x'.join(map(str, shape))}", "bf16", build)


def bf16_dense_backward_case(shape):
    def build(ctx):
        need_bf16_units()
        n, k, m = shape
        x, w, b = dense_data(n, k, m)
        dy = np.random.default_rng(1).standard_normal((n, m), dtype=np.float32)
        y = K.dense_forward(x, w, b, "relu")
        dz = dy.astype(np.float64) * (y > 0)
        cols = row_sample(m, 128)
        dw_ref = x.T.astype(np.float64) @ dz[:, cols]
        bound = np.abs(x.T).astype(np.float64) @ np.abs(dz[:, cols])
        def check(r, bf16_out=False):
            within_bf16("dw", np.asarray(r[1])[:, cols], dw_ref, bound, bf16_out)

        out = (np.empty((n, k), np.float32), np.empty((k, m), np.float32), np.empty(m, np.float32))
        impls = [Impl("fastdl", lambda: K.dense_backward(dy, x, w, "relu", y=y, out=out, precision="bf16"), check),
                 Impl("fastdl fp32", lambda: K.dense_backward(dy, x, w, "relu", y=y, out=out), check)]
        notes: list[str] = []
        t = torch_or_note(notes)
        if t is not None:
            tdz = t.from_numpy(dz.astype(np.float32))
            tx, tw = t.from_numpy(x), t.from_numpy(w)

            def autocast():  # what autograd runs for addmm under autocast: dx, dw, db
                with t.autocast("cpu", dtype=t.bfloat16):
                    return t.mm(tdz, tw.T), t.mm(tx.T, tdz), tdz.sum(0)

            impls.append(Impl("torch autocast", autocast, lambda r: check([v.float().numpy() for v in r], True)))
        return Prepared(impls, 4.0 * n * k * m, "GFLOP/s", notes)

    return Case(f"bf16 dense bwd relu {'x'.join(map(str, shape))}", "bf16", build)


def bf16_train_step_case(name, widths, batch):
    from . import network

    def build(ctx):
        need_bf16_units()
        network.fastdl_network_api()
        x, y = network.teacher_batch(widths, batch)
        ratio = ctx.sizes.learn_ratio
        impls: list[Impl] = []
        notes = [f"Adam lr 1e-3, ReLU, softmax-CE, compile(precision=...); validated: 30 steps on "
                 f"one batch bring the loss below {ratio:g}x its start"]
        for name_, precision in (("fastdl", "bf16"), ("fastdl fp32", "fp32")):
            model = network.fastdl_mlp(widths, precision=precision)
            step = lambda model=model: model.train_step(x, y)  # noqa: E731
            impls.append(Impl(name_, step,
                              validate=lambda step=step: network.learns(step, ratio=ratio)))  # type: ignore[misc]
        t = torch_or_note(notes)
        if t is not None:
            tx, ty = t.from_numpy(x), t.from_numpy(y)
            loss_fn = t.nn.CrossEntropyLoss()
            for name_, cast in (("torch", False), ("torch autocast", True)):
                tmodel, opt = network.torch_mlp(t, widths)

                def torch_step(tmodel=tmodel, opt=opt, cast=cast):
                    opt.zero_grad(set_to_none=True)
                    with t.autocast("cpu", dtype=t.bfloat16, enabled=cast):
                        loss = loss_fn(tmodel(tx), ty)
                    loss.backward()
                    opt.step()
                    return loss.item()

                impls.append(Impl(name_, torch_step,
                                  validate=lambda s=torch_step: network.learns(s, ratio=ratio)))  # type: ignore[misc]
        return Prepared(impls, network.step_flops(widths, batch), "GFLOP/s", notes)

    return Case(f"bf16 train_step {name}", "bf16", build)


def bf16_cases(sizes):
    cases = [bf16_matmul_case(sizes.bf16_gemm_n)]
    cases += [bf16_dense_forward_case(s) for s in sizes.bf16_dense_shapes]
    cases += [bf16_dense_backward_case(s) for s in sizes.bf16_dense_shapes]
    cases += [bf16_train_step_case(name, widths, batch) for name, widths, batch in sizes.bf16_train_steps]
    return cases
