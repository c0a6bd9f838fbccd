"""Every GPU kernel once, on shapes that cross tile and grid edges: the program the
verification run (tools/gpu_verify.py) runs under `compute-sanitizer --tool memcheck`,
so that each kernel's memory accesses are checked at least once on real hardware.

    python tools/gpu_exercise.py --result FILE [--dry]

It calls every public kernel of fastdl.cuda.kernels (and fails when one is added there
but not here), the fused MLP (forward and backward, an activation that keeps z and one
that does not), FusedMLPStep with each loss, and a Sequential(device="cuda") network
with Dropout, BatchNorm, Maxout and PReLU through train_step, predict and the eval-time
dropout scaling. --dry: tiny shapes on Numba's CUDA simulator (no sanitizer there).
The result file lists what was called and which kernels were launched how often.
"""

import argparse
import collections
import json
import sys
import traceback

import numpy as np


def _hook_launches(counts):
    """Counts launches by kernel (its Python function's qualified name)."""
    import fastdl.cuda

    if fastdl.cuda.is_simulator():
        from numba.cuda.simulator import kernel as sim

        original = sim.FakeCUDAKernel.__call__

        def launch(self, *args):
            if not self._device and sim._kernel_context is None:
                counts[self.fn.__qualname__] += 1
            return original(self, *args)

        sim.FakeCUDAKernel.__call__ = launch
    else:
        from numba.cuda.dispatcher import _LaunchConfiguration

        original = _LaunchConfiguration.__call__

        def launch(self, *args):
            counts[self.dispatcher.py_func.__qualname__] += 1
            return original(self, *args)

        _LaunchConfiguration.__call__ = launch


def exercise(dry, called):
    from numba import cuda

    import fastdl
    from fastdl import BatchNorm, Dense, Dropout, Maxout, Sequential
    from fastdl import kernels as K
    from fastdl.cuda import kernels as G
    from fastdl.cuda.fused_mlp import FusedMLP
    from fastdl.cuda.fused_step import FusedMLPStep

    rng = np.random.default_rng(0)
    dev = cuda.to_device

    def f32(*shape, scale=1.0):
        return dev((scale * rng.standard_normal(shape)).astype(np.float32))

    def call(name, *args, **kwargs):
        called[name] += 1
        return getattr(G, name)(*args, **kwargs)

    # Shapes past one 64x64 tile and off its edges (several blocks, partial tiles); the
    # optimizer buffers past one grid-stride pass (132 * 16 blocks of 256 threads).
    n, k, m = (5, 7, 9) if dry else (70, 33, 130)
    n_opt = 300 if dry else 600_011
    pieces = 3

    x, w, b = f32(n, k), f32(k, m, scale=0.3), f32(m)
    for act in ("relu", "gelu", "prelu", "leaky_relu"):
        alpha = f32(m) if act == "prelu" else None
        out = call("dense_forward", x, w, b, act, alpha=alpha)
        y, z = out if act in G.NEEDS_Z else (out, None)
        saved = {"z": z} if z is not None else {"y": y}
        call("dense_backward", f32(n, m), x, w, act, alpha=alpha, **saved)
    call("matmul", x, w)
    yd, mask = call("dense_dropout_forward", x, w, b, "tanh", 0.3, 7, 1)
    call("dense_dropout_backward", f32(n, m), x, w, "tanh", mask, 0.3, y=yd)
    yd, mask = call("dropout_forward", f32(n, m), 0.5, 7, 2, offset=3)  # an offset not a multiple of 4
    call("dropout_backward", f32(n, m), mask, 0.5)
    z = f32(n, m * pieces)
    ym, am = call("maxout_forward", z, pieces)
    call("maxout_backward", f32(n, m), am, pieces)
    wm = f32(k, m * pieces, scale=0.3)
    ym, am = call("dense_maxout_forward", x, wm, f32(m * pieces), pieces)
    call("dense_maxout_backward", f32(n, m), x, wm, am, pieces)
    call("dense_maxout_forward", x, f32(k, 70 * 2, scale=0.3), f32(70 * 2), 70)  # pieces > 64: the extra pass
    c = m
    call("softmax_cross_entropy", f32(n, c), dev(rng.integers(0, c, n).astype(np.int64)), label_smoothing=0.1)
    call("softmax_cross_entropy", f32(n, c), dev(rng.dirichlet(np.ones(c), n).astype(np.float32)))
    call("mse", f32(n, c), f32(n, c))
    call("binary_cross_entropy", f32(n, c), dev(rng.uniform(0, 1, (n, c)).astype(np.float32)))
    gamma, beta = f32(m), f32(m)
    rm, rv = dev(np.zeros(m, np.float32)), dev(np.ones(m, np.float32))
    xb = f32(n, m)
    yb, mean, invstd = call("batchnorm_forward_train", xb, gamma, beta, rm, rv)
    call("batchnorm_forward_eval", xb, gamma, beta, rm, rv)
    call("batchnorm_backward", f32(n, m), xb, gamma, mean, invstd)

    def state():
        return dev(np.zeros(n_opt, np.float32))

    p, g = f32(n_opt), f32(n_opt)
    segments = np.array([[0, n_opt // 3], [n_opt // 2, n_opt]], np.int64)
    call("sgd_step", p, g, state(), lr=0.1, momentum=0.9, nesterov=True, decay_segments=segments, weight_decay=0.1)
    call("adagrad_step", p, g, state(), lr=0.1, step=1)
    call("rmsprop_step", p, g, state(), lr=0.01, momentum=0.9, centered=True, momentum_buf=state(), grad_avg=state())
    call("adadelta_step", p, g, state(), state())
    call("adam_step", p, g, state(), state(), lr=1e-3, step=3, weight_decay=0.01, decoupled=True,
         decay_segments=segments)
    call("max_norm_", f32(k, m), 0.5)
    K.dense_forward(x, w, b, "relu")  # through fastdl.kernels' routing of a device array
    called["fastdl.kernels routing"] += 1

    # the fused MLP: an activation that keeps z (gelu) and one that does not (relu)
    rows = 7 if dry else 70
    widths = (6, 16, 16, 3) if dry else (100, 128, 64, 128, 10)
    for act in ("relu", "gelu"):
        mlp = FusedMLP(widths, act, batch=rows)
        params = mlp.init_params(rng)
        xs = f32(rows, widths[0])
        logits = mlp.forward(xs, params)
        mlp.backward(dev(np.ones(logits.shape, np.float32)), xs, params, cuda.device_array(mlp.n_params, np.float32))
        called[f"FusedMLP {act}"] += 1
    for loss, target in (("softmax_cross_entropy", dev(rng.integers(0, widths[-1], rows).astype(np.int64))),
                         ("mse", f32(rows, widths[-1])),
                         ("binary_cross_entropy", dev(rng.uniform(0, 1, (rows, widths[-1])).astype(np.float32)))):
        mlp = FusedMLP(widths, "elu", batch=rows)
        params = mlp.init_params(rng)
        step = FusedMLPStep(widths[0], widths[1:], "elu", params=params, grads=cuda.device_array(mlp.n_params, np.float32),
                            loss=loss)
        step.train(f32(rows, widths[0]), target)
        called[f"FusedMLPStep {loss}"] += 1

    # a network through every stage kind, train and inference (the eval-time dropout scale)
    width = 8 if dry else 96
    model = Sequential([Dropout(0.2), Dense(k, width, activation="relu"), Dropout(0.5, scale_at_test=True),
                        Dense(width, width, activation="prelu"), BatchNorm(width), Maxout(width, width // 2, pieces=2),
                        Dense(width // 2, 4)], seed=0, device="cuda")
    model.compile(optimizer=fastdl.optim.Adam(1e-3), loss="softmax_cross_entropy")
    xh = rng.standard_normal((n, k)).astype(np.float32)
    yh = rng.integers(0, 4, n).astype(np.int64)
    model.train_step(xh, yh)
    model.predict(xh)
    called["Sequential train_step + predict"] += 1
    cuda.synchronize()


def expected_names():
    from fastdl.cuda import kernels as G

    return sorted(name for name in G.__all__ if callable(getattr(G, name)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--result", required=True, help="JSON file for what was called and launched")
    ap.add_argument("--dry", action="store_true", help="tiny shapes (the simulator)")
    args = ap.parse_args(argv)
    called, launched = collections.Counter(), collections.Counter()
    _hook_launches(launched)
    error = None
    try:
        exercise(args.dry, called)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    missing = [name for name in expected_names() if name not in called]
    result = {"called": dict(called), "missing_kernels": missing, "launches": sum(launched.values()),
              "kernels_launched": dict(sorted(launched.items())), "error": error}
    with open(args.result, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{len(called)} entry points called, {len(launched)} distinct kernels launched "
          f"{result['launches']} times; missing: {missing or 'none'}; error: {error or 'none'}")
    return 1 if (error or missing) else 0


if __name__ == "__main__":
    sys.exit(main())
