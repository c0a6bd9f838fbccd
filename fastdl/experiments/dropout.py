"""With and without dropout (and max-norm): the train/validation gap over epochs."""

from fastdl import Dense, Dropout, optim
from fastdl.experiments._base import best, epoch_rows, final
from fastdl.experiments._callbacks import CleanTrainMetrics

TITLE = "Dropout: the gap between training and validation"
CLAIM = ("a large network on little data overfits (training loss to zero, validation loss turning up); "
         "dropout (and max-norm) keeps the validation loss down and narrows the gap")


def net(n_in, width, n_out, p_in, p, max_norm):
    return [Dropout(p_in), Dense(n_in, width, activation="relu", max_norm=max_norm), Dropout(p),
            Dense(width, activation="relu", max_norm=max_norm), Dropout(p), Dense(n_out, max_norm=max_norm)]


def run(ctx):
    width = ctx.pick(64, 512, 1024)
    epochs = ctx.pick(3, 100, 200)
    n_train = ctx.pick(200, 300, 2000)
    data = ctx.data(n_train=n_train, n_val=ctx.pick(200, 2000, None))
    lr = 1e-3
    variants = {"no dropout": (0.0, 0.0, None), "dropout 0.2 in / 0.5 hidden": (0.2, 0.5, None),
                "dropout + max-norm 3": (0.2, 0.5, 3.0)}
    runs, rows, table = {}, [], []
    for label, (p_in, p, mn) in variants.items():
        model = ctx.model(net(data.n_features, width, data.n_classes, p_in, p, mn), optim.Adam(lr))
        hist, secs = ctx.fit(model, data, epochs, batch_size=32,
                             callbacks=[CleanTrainMetrics(data.x_train, data.y_train)])
        runs[label] = {"loss": hist["clean_loss"], "accuracy": hist["clean_accuracy"],
                       "val_loss": hist["val_loss"], "val_accuracy": hist["val_accuracy"]}
        rows += epoch_rows({"variant": label}, hist)
        table.append({"variant": label, "train_loss_clean": final(hist, "clean_loss"),
                      "val_loss_final": final(hist, "val_loss"), "val_loss_best": best(hist, "val_loss", "min"),
                      "gap_final (val-train loss)": final(hist, "val_loss") - final(hist, "clean_loss"),
                      "train_accuracy": final(hist, "clean_accuracy"), "val_accuracy": final(hist, "val_accuracy"),
                      "val_accuracy_best": best(hist, "val_accuracy"), "seconds": secs})
        ctx.log(f"{label}: val acc {table[-1]['val_accuracy']:.3f}, gap {table[-1]['gap_final (val-train loss)']:.3f}")
    ctx.write_csv("results.csv", rows)
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    ctx.plot("curves.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss", "accuracy"), logy={"loss": True},
        title="Training (solid, measured without dropout) vs validation (dashed)", path=p),
        "Training vs validation loss and accuracy, with and without dropout")
    ctx.plot("gap.png", lambda p: plotting.line_chart(
        {k: (range(1, len(h["loss"]) + 1), [v - t for v, t in zip(h["val_loss"], h["loss"])])
         for k, h in runs.items()}, xlabel="epoch", ylabel="validation loss - training loss",
        title="The generalization gap", path=p, styles={k: "-" for k in runs}), "Validation minus training loss")

    by = {r["variant"]: r for r in table}
    a, b, c = by["no dropout"], by["dropout 0.2 in / 0.5 hidden"], by["dropout + max-norm 3"]
    findings = [
        f"Without dropout the training loss reaches {a['train_loss_clean']:.2g} while the validation loss ends at "
        f"{a['val_loss_final']:.3g} (best {a['val_loss_best']:.3g}): a gap of {a['gap_final (val-train loss)']:.3g}.",
        f"With dropout the gap is {b['gap_final (val-train loss)']:.3g} (validation loss {b['val_loss_final']:.3g}, "
        f"accuracy {b['val_accuracy']:.3f} vs {a['val_accuracy']:.3f} without); with max-norm too "
        f"{c['gap_final (val-train loss)']:.3g} (accuracy {c['val_accuracy']:.3f}).",
    ]
    if b["val_loss_best"] < a["val_loss_best"] and b["gap_final (val-train loss)"] < a["gap_final (val-train loss)"]:
        findings.append("Dropout lowered both the best validation loss and the gap: the claim holds here.")
    else:
        findings.append(f"Dropout did not help here (best validation loss {b['val_loss_best']:.3g} with, "
                        f"{a['val_loss_best']:.3g} without): the plain network does not overfit this data enough "
                        "for dropout's noise to pay for itself in these epochs" +
                        (" (try --full)." if ctx.on_mnist else " (try --mnist PATH or --full)."))
    if c["val_loss_final"] == b["val_loss_final"]:
        findings.append("Max-norm 3 never bound (no unit's incoming weight vector grew past norm 3), so that run "
                        "is the dropout run exactly.")
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {data.n_features} -> {width} -> {width} ReLU -> {data.n_classes}, trained on only "
        f"{len(data.x_train)} samples so that it can overfit; Adam lr {lr}, batch 32, {epochs} epochs",
        "training metrics are re-measured each epoch in inference mode (no dropout), so both curves measure the "
        "same network; inverted dropout, fresh masks every step"], findings, table=table)
    return {"table": table}
