"""The same network with each activation: learning curves."""

from fastdl import Dense, Maxout, optim
from fastdl.experiments._base import epoch_rows, final

TITLE = "Activations: sigmoid, tanh, ReLU, leaky ReLU, PReLU, SiLU, softplus, maxout"
CLAIM = ("ReLU-like units (ReLU, leaky ReLU, PReLU, SiLU) and maxout train a deep network much faster than "
         "sigmoid; tanh sits in between")

UNITS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "silu", "softplus", "maxout2", "maxout3")


def layers(unit, depth, n_in, width, n_out):
    hidden: list
    if unit.startswith("maxout"):
        k = int(unit[-1])
        hidden = [Maxout(n_in, width, pieces=k)] + [Maxout(width, pieces=k) for _ in range(depth - 1)]
    else:
        hidden = [Dense(n_in, width, activation=unit)] + [Dense(width, activation=unit) for _ in range(depth - 1)]
    return hidden + [Dense(n_out)]


def run(ctx):
    depth = ctx.pick(2, 4, 6)
    width = ctx.pick(32, 64, 128)
    epochs = ctx.pick(2, 15, 30)
    units = ctx.pick(("sigmoid", "relu", "maxout2"), UNITS)
    lr, momentum = 0.02, 0.9
    data = ctx.data(n_train=ctx.pick(400, 2000, None), n_val=ctx.pick(200, 2000, None))
    runs, rows, table = {}, [], []
    for unit in units:
        model = ctx.model(layers(unit, depth, data.n_features, width, data.n_classes),
                          optim.SGD(lr, momentum=momentum))
        hist, secs = ctx.fit(model, data, epochs, batch_size=32)
        runs[unit] = hist
        rows += epoch_rows({"activation": unit}, hist)
        above = [i + 1 for i, a in enumerate(hist["accuracy"]) if a >= 0.9]
        table.append({"activation": unit, "params": model.num_params,
                      "loss_epoch1": hist["loss"][0], "final_loss": final(hist, "loss"),
                      "train_accuracy": final(hist, "accuracy"), "val_accuracy": final(hist, "val_accuracy"),
                      "epochs_to_90pct_train": above[0] if above else "never", "seconds": secs})
        ctx.log(f"{unit}: val acc {table[-1]['val_accuracy']:.3f}")
    ctx.write_csv("results.csv", rows)
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    ctx.plot("learning_curves.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss", "accuracy"), train=True, validation=False,
        title=f"{depth} hidden layers of {width} units, SGD+momentum: training curves", path=p),
        "Training loss and accuracy per epoch, one line per activation")
    ctx.plot("validation_curves.png", lambda p: plotting.learning_curves(
        runs, metrics=("accuracy",), train=False, validation=True,
        title="Validation accuracy", path=p), "Validation accuracy per epoch")

    by = {r["activation"]: r for r in table}
    order = sorted(table, key=lambda r: r["final_loss"])
    findings = [
        "Final training loss, best first: " + ", ".join(f"{r['activation']} {r['final_loss']:.3g}" for r in order)
        + ".",
        "Epochs to reach 90% training accuracy: " + ", ".join(
            f"{r['activation']} {r['epochs_to_90pct_train']}" for r in table) + ".",
    ]
    if "sigmoid" in by and "relu" in by:
        s, r = by["sigmoid"], by["relu"]
        findings.append(f"After the first epoch the sigmoid network's loss is {s['loss_epoch1']:.3g} against "
                        f"ReLU's {r['loss_epoch1']:.3g}; at the end, validation accuracy {s['val_accuracy']:.3f} "
                        f"vs {r['val_accuracy']:.3f}.")
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {depth} hidden layers of {width} units, the activation under test in each; maxout layers have "
        f"{width} units of k pieces (k times the weights); each activation's default init (He for ReLU-like, "
        "Glorot otherwise)",
        f"SGD lr {lr}, momentum {momentum}, batch 32, {epochs} epochs"], findings, table=table)
    return {"table": table, "units": list(units)}
