"""SGD, momentum, Nesterov, Adagrad, RMSProp, Adadelta, Adam, AdamW on one network."""

from fastdl import Dense, optim
from fastdl.experiments._base import best, epoch_rows, final

TITLE = "Optimizers: SGD, momentum, Nesterov, Adagrad, RMSProp, Adadelta, Adam, AdamW"
CLAIM = ("momentum and adaptive learning rates (Adagrad, RMSProp, Adam) reach a low loss in far fewer epochs "
         "than plain SGD at a comparable cost per step")


def optimizers():
    """label -> (factory, lr description): sensible learning rates for each (common defaults)."""
    return {
        "SGD lr=0.05": lambda: optim.SGD(0.05),
        "momentum 0.9 lr=0.05": lambda: optim.SGD(0.05, momentum=0.9),
        "Nesterov 0.9 lr=0.05": lambda: optim.SGD(0.05, momentum=0.9, nesterov=True),
        "Adagrad lr=0.05": lambda: optim.Adagrad(0.05),
        "RMSProp lr=1e-3": lambda: optim.RMSProp(1e-3),
        "Adadelta lr=1": lambda: optim.Adadelta(1.0),
        "Adam lr=1e-3": lambda: optim.Adam(1e-3),
        "AdamW lr=1e-3 wd=0.01": lambda: optim.AdamW(1e-3, weight_decay=1e-2),
    }


def run(ctx):
    hidden = ctx.pick([32], [128, 128], [256, 256, 256])
    epochs = ctx.pick(2, 15, 40)
    data = ctx.data(n_train=ctx.pick(400, 2000, None), n_val=ctx.pick(200, 2000, None))
    opts = optimizers()
    if ctx.size == "tiny":
        opts = {k: v for k, v in opts.items() if k.split()[0] in ("SGD", "momentum", "Adam")}
    runs, rows, table = {}, [], []
    for label, make in opts.items():
        net = [Dense(data.n_features, hidden[0], activation="relu")] + \
              [Dense(h, activation="relu") for h in hidden[1:]] + [Dense(data.n_classes)]
        model = ctx.model(net, make())
        hist, secs = ctx.fit(model, data, epochs, batch_size=32)
        runs[label] = hist
        rows += epoch_rows({"optimizer": label}, hist)
        table.append({"optimizer": label, "loss_epoch1": hist["loss"][0], "final_loss": final(hist, "loss"),
                      "best_val_loss": best(hist, "val_loss", "min"), "val_accuracy": final(hist, "val_accuracy"),
                      "train_seconds": sum(hist["time"]), "ms_per_epoch": 1e3 * sum(hist["time"]) / epochs})
        ctx.log(f"{label}: final loss {table[-1]['final_loss']:.4f}")
    ctx.write_csv("results.csv", rows)
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    ctx.plot("loss_vs_epoch.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss",), validation=False, logy={"loss": True},
        title="Training loss per epoch", path=p), "Training loss vs epoch")
    ctx.plot("loss_vs_time.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss",), validation=False, x="time", logy={"loss": True},
        title="Training loss vs training time", path=p), "Training loss vs wall time (seconds of training)")
    ctx.plot("validation.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss", "accuracy"), train=False, title="Validation", path=p),
        "Validation loss and accuracy per epoch")

    order = sorted(table, key=lambda r: r["final_loss"])
    sgd = next(r for r in table if r["optimizer"].startswith("SGD"))
    bestr = order[0]
    findings = [
        "Final training loss, best first: " + ", ".join(f"{r['optimizer']} {r['final_loss']:.3g}" for r in order)
        + ".",
        f"The best ({bestr['optimizer']}) ends at {sgd['final_loss'] / bestr['final_loss']:.3g} times lower "
        f"training loss than plain SGD; best validation loss {bestr['best_val_loss']:.3g} vs SGD's "
        f"{sgd['best_val_loss']:.3g}.",
        "Time per epoch ranges from {:.0f} to {:.0f} ms: the optimizer step is one fused kernel over the flat "
        "buffer, a small share of each step here.".format(min(r["ms_per_epoch"] for r in table),
                                                        max(r["ms_per_epoch"] for r in table)),
        "Lowest validation loss: {} ({:.3g}); a training loss far below the validation loss is fitting the "
        "training set faster, not generalizing better.".format(
            *min(((r["optimizer"], r["best_val_loss"]) for r in table), key=lambda t: t[1])),
    ]
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {' -> '.join(str(h) for h in hidden)} ReLU hidden units, He init; the same seed (same initial "
        "weights and batch order) for every optimizer",
        f"batch 32, {epochs} epochs; learning rates as in the labels (common defaults, not tuned per optimizer)"],
        findings, table=table)
    return {"table": table}
