"""Batch sizes 1 to 1024: time per epoch, loss per epoch, gradient noise."""

import math

import numpy as np

from fastdl import Dense, optim
from fastdl.experiments._base import epoch_rows, final

TITLE = "Batch size: 1 to 1024"
CLAIM = ("a larger mini-batch estimates the gradient better (the error falls like 1/sqrt(B): less than linear "
         "returns) and runs faster per sample, but makes fewer updates per epoch; hardware prefers powers of two")


def run(ctx):
    sizes = ctx.pick([1, 8, 32, 100, 128, 1024], [1, 2, 4, 8, 16, 32, 64, 96, 100, 127, 128, 256, 512, 1024],
                     [1, 2, 4, 8, 16, 32, 64, 96, 100, 127, 128, 256, 512, 1024])
    epochs = ctx.pick(2, 10, 30)
    data = ctx.data(n_train=ctx.pick(300, 2000, None), n_val=ctx.pick(200, 2000, None))
    lr = 0.05
    width = 128

    def model():
        return ctx.model([Dense(data.n_features, width, activation="relu"), Dense(width, activation="relu"),
                          Dense(data.n_classes)], optim.SGD(lr))

    # gradient noise at initialization: ||g_B - g_full|| / ||g_full|| over a few random batches
    m = model()
    x, y = m.prepare_inputs(data.x_train), m.prepare_targets(data.y_train)
    m.compute_gradients(x, y)
    from fastdl import _device
    g_full = _device.to_host(m.flat_grads).astype(np.float64)
    rng = np.random.default_rng(ctx.seed)
    noise = {}
    for b in sizes:
        if b >= len(x):
            continue
        errs = []
        for _ in range(ctx.pick(5, 20, 50)):
            idx = rng.choice(len(x), b, replace=False)
            m.compute_gradients(np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx]))
            errs.append(_norm(_device.to_host(m.flat_grads) - g_full) / _norm(g_full))
        noise[b] = float(np.mean(errs))

    runs, rows, table = {}, [], []
    for b in sizes:
        mod = model()
        hist, secs = ctx.fit(mod, data, epochs, batch_size=b)
        label = f"B={b}"
        runs[label] = hist
        rows += epoch_rows({"batch_size": b}, hist)
        t_epoch = float(np.median(hist["time"]))
        table.append({"batch_size": b, "steps_per_epoch": math.ceil(len(data.x_train) / b),
                      "ms_per_epoch": 1e3 * t_epoch, "us_per_sample": 1e6 * t_epoch / len(data.x_train),
                      "grad_rel_error_init": noise.get(b, math.nan), "final_loss": final(hist, "loss"),
                      "val_accuracy": final(hist, "val_accuracy")})
        ctx.log(f"B={b}: {1e3 * t_epoch:.1f} ms/epoch, final loss {table[-1]['final_loss']:.4g}")
    ctx.write_csv("results.csv", table)
    ctx.write_csv("curves.csv", rows)

    from fastdl import plotting

    bs = [r["batch_size"] for r in table]
    ctx.plot("time_per_epoch.png", lambda p: plotting.line_chart(
        {"time per epoch": (bs, [r["ms_per_epoch"] for r in table])}, xlabel="batch size", ylabel="ms per epoch",
        logx=2, logy=True, title="Time per epoch (median)", path=p), "Time per epoch vs batch size (log-log)")
    nb = sorted(noise)
    ctx.plot("gradient_noise.png", lambda p: plotting.line_chart(
        {"measured": (nb, [noise[b] for b in nb])}, xlabel="batch size", ylabel="||g_B - g|| / ||g||", logx=2,
        logy=True, title="Mini-batch gradient error at initialization", path=p,
        reference=(nb, [noise[nb[0]] * math.sqrt(nb[0] / b) for b in nb], "1/sqrt(B)")),
        "Relative error of the mini-batch gradient vs the full-batch one, with the 1/sqrt(B) law")
    pick = [b for b in sizes if b in (1, 8, 32, 128, 1024)] or sizes
    ctx.plot("loss_vs_epoch.png", lambda p: plotting.learning_curves(
        {f"B={b}": runs[f"B={b}"] for b in pick}, metrics=("loss",), validation=False, logy={"loss": True},
        title=f"Training loss per epoch (SGD lr {lr})", path=p), "Training loss per epoch for some batch sizes")
    ctx.plot("loss_vs_time.png", lambda p: plotting.learning_curves(
        {f"B={b}": runs[f"B={b}"] for b in pick}, metrics=("loss",), validation=False, x="time",
        logy={"loss": True}, title="Training loss vs training time", path=p), "Training loss vs wall time")

    by = {r["batch_size"]: r for r in table}
    findings = []
    if len(nb) >= 2:
        lo, hi = nb[0], nb[-1]
        findings.append(f"The gradient error falls from {noise[lo]:.3g} (B={lo}) to {noise[hi]:.3g} (B={hi}): "
                        f"{noise[lo] / noise[hi]:.3g} times smaller for {hi // lo} times the work, against "
                        f"{math.sqrt(hi / lo):.3g} for the 1/sqrt(B) law (sampling without replacement from "
                        f"{len(x)} samples makes the largest batches a bit better than that).")
    findings.append("Time per epoch: " + ", ".join(f"B={r['batch_size']} {r['ms_per_epoch']:.0f} ms"
                                                   for r in table) + ".")
    findings.append("Final training loss after {} epochs: {}.".format(
        epochs, ", ".join(f"B={r['batch_size']} {r['final_loss']:.3g}" for r in table)))
    pairs = [(a, b) for a, b in ((96, 128), (100, 128), (127, 128)) if a in by and b in by]
    if pairs:
        findings.append("Powers of two: " + "; ".join(
            f"B={a} takes {by[a]['us_per_sample']:.2f} us/sample, B={b} {by[b]['us_per_sample']:.2f}"
            for a, b in pairs) + ". " + _pow2_verdict(by, pairs))
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {data.n_features} -> {width} -> {width} ReLU -> {data.n_classes}; plain SGD lr {lr} for every "
        f"batch size (no scaling), {epochs} epochs",
        "time per epoch: median over the epochs of the training loop alone (no validation)",
        "gradient error: relative L2 distance between the gradient of a random batch (without replacement) and "
        "the full training-set gradient, at initialization, averaged over batches"], findings, table=table)
    return {"table": table, "noise": noise}


def _pow2_verdict(by, pairs):
    faster = [a for a, b in pairs if by[b]["us_per_sample"] < by[a]["us_per_sample"] * 0.95]
    slower = [a for a, b in pairs if by[b]["us_per_sample"] > by[a]["us_per_sample"] * 1.05]
    if faster and slower:
        return ("No consistent power-of-two advantage: B=128 was faster than B=" + ", ".join(map(str, faster)) +
                " but slower than B=" + ", ".join(map(str, slower)) + ", so the differences are timing noise.")
    if not faster and not slower:
        return "No difference beyond 5% between B=128 and its neighbours."
    if faster:
        return ("B=128 was faster than B=" + ", ".join(map(str, faster)) + " by more than 5% and no neighbour "
                "beat it; single timings on a shared machine are noisy, so treat this as a hint.")
    return "B=128 was slower than B=" + ", ".join(map(str, slower)) + ": no power-of-two advantage here."


def _norm(v):
    # not np.linalg.norm: its BLAS dot may wait on threads on a busy machine
    return math.sqrt(float(np.square(v, dtype=np.float64).sum()))
