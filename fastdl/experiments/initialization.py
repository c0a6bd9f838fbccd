"""Uniform 1/sqrt(m), Glorot and He initialization on deep ReLU networks."""

from fastdl import Dense, initializers, optim
from fastdl.callbacks import GradientMonitor
from fastdl.experiments._base import epoch_rows, final
from fastdl.monitoring import gradient_norms

TITLE = "Initialization: uniform 1/sqrt(m), Glorot, He on deep ReLU networks"
CLAIM = ("in a deep ReLU network the initial weights' scale decides whether the signal and the gradient "
         "survive the depth: U(+-1/sqrt(m)) shrinks them layer by layer, Glorot less, He keeps them level")

INITS = {"uniform 1/sqrt(m)": initializers.LeCunUniform, "Glorot uniform": initializers.GlorotUniform,
         "He uniform": initializers.HeUniform}


def run(ctx):
    depth = ctx.pick(6, 12, 20)
    width = ctx.pick(32, 64, 128)
    epochs = ctx.pick(2, 20, 40)
    data = ctx.data(n_train=ctx.pick(400, 2000, None), n_val=ctx.pick(200, 2000, None))
    lr, momentum = 0.01, 0.9
    probe = slice(0, min(256, len(data.x_train)))
    runs, rows, table, norms = {}, [], [], {}
    for label, init in INITS.items():
        net = [Dense(data.n_features, width, activation="relu", init=init())] + \
              [Dense(width, activation="relu", init=init()) for _ in range(depth - 1)] + \
              [Dense(data.n_classes, init=init())]
        model = ctx.model(net, optim.SGD(lr, momentum=momentum))
        g0 = gradient_norms(model, data.x_train[probe], data.y_train[probe])
        act_std = _activation_std(model, data.x_train[probe])
        norms[label] = g0
        hist, secs = ctx.fit(model, data, epochs, callbacks=[GradientMonitor()])
        runs[label] = hist
        rows += epoch_rows({"init": label}, hist)
        layers = list(g0)
        table.append({"init": label, "output_std_init": act_std, "grad_first_init": g0[layers[0]],
                      "grad_last_init": g0[layers[-1]], "first_over_last": g0[layers[0]] / g0[layers[-1]],
                      "loss_epoch1": hist["loss"][0], "final_loss": final(hist, "loss"),
                      "val_accuracy": final(hist, "val_accuracy"), "seconds": secs})
        ctx.log(f"{label}: first/last grad {table[-1]['first_over_last']:.3g}, val acc {table[-1]['val_accuracy']:.3f}")
    ctx.write_csv("results.csv", rows)
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    ctx.plot("gradients_by_layer.png", lambda p: plotting.gradient_norms_by_depth(
        norms, title=f"{depth} ReLU layers: gradient norm per layer at initialization", path=p),
        "Per-layer gradient norms at initialization")
    ctx.plot("curves.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss", "accuracy"), logy={"loss": True}, title="Training (solid) and validation (dashed)",
        path=p), "Learning curves")

    by = {r["init"]: r for r in table}
    u, g, h = by["uniform 1/sqrt(m)"], by["Glorot uniform"], by["He uniform"]
    findings = [
        f"Standard deviation of the output logits at initialization: {u['output_std_init']:.2g} (uniform), "
        f"{g['output_std_init']:.2g} (Glorot), {h['output_std_init']:.2g} (He). Each ReLU layer multiplies the "
        "signal's variance by m*Var(w)/2: 1/6 with U(+-1/sqrt(m)), 1/2 with Glorot (square layers), 1 with He; "
        f"over {depth} layers that predicts std ratios to He of {(1 / 6) ** (depth / 2):.1e} and "
        f"{0.5 ** (depth / 2):.1e}; measured {u['output_std_init'] / h['output_std_init']:.1e} and "
        f"{g['output_std_init'] / h['output_std_init']:.1e}.",
        f"First-layer weight gradient at initialization: {u['grad_first_init']:.2g} (uniform), "
        f"{g['grad_first_init']:.2g} (Glorot), {h['grad_first_init']:.2g} (He). The ratio first/last layer stays "
        "within a small factor for all three, because a layer's weight gradient is its input (shrinking "
        "forward) times the gradient arriving from above (shrinking backward): with a too-small init every "
        f"layer's gradient is small, not just the first one's (first over last layer: {u['first_over_last']:.2g}, "
        f"{g['first_over_last']:.2g}, {h['first_over_last']:.2g}).",
        f"After {epochs} epochs: training loss {u['final_loss']:.3g} / {g['final_loss']:.3g} / {h['final_loss']:.3g}, "
        f"validation accuracy {u['val_accuracy']:.3f} / {g['val_accuracy']:.3f} / {h['val_accuracy']:.3f} "
        "(uniform / Glorot / He).",
    ]
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {depth} hidden layers of {width} ReLU units, zero biases, the initializer under test on every "
        f"weight matrix; SGD lr {lr} momentum {momentum}, batch 32, {epochs} epochs",
        f"gradient norms on the first {probe.stop} training samples at initialization"], findings, table=table)
    return {"table": table, "norms": norms}


def _activation_std(model, x):
    import numpy as np

    return float(np.std(model.predict(x).astype(np.float64)))
