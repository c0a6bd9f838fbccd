"""Early stopping: where it stops and the best epoch it restores."""

from fastdl import Dense, optim
from fastdl.callbacks import EarlyStopping
from fastdl.experiments._base import epoch_rows

TITLE = "Early stopping"
CLAIM = ("the validation loss falls and then rises as the network starts to overfit; stopping once it has not "
         "improved for a few epochs and restoring the best weights keeps the best network seen")


def run(ctx):
    width = ctx.pick(64, 512, 1024)
    epochs = ctx.pick(6, 60, 150)
    patience = ctx.pick(2, 5, 10)
    data = ctx.data(n_train=ctx.pick(200, 300, 2000), n_val=ctx.pick(200, 2000, None))

    lr = 3e-3

    def model():
        return ctx.model([Dense(data.n_features, width, activation="relu"), Dense(width, activation="relu"),
                          Dense(data.n_classes)], optim.Adam(lr))

    # the same seed: the early-stopped run follows the full run exactly until it stops
    full, full_secs = ctx.fit(m_full := model(), data, epochs)
    es = EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    stopped, es_secs = ctx.fit(m_es := model(), data, epochs, callbacks=[es])
    restored = m_es.evaluate(data.x_val, data.y_val, return_dict=True)
    end = m_full.evaluate(data.x_val, data.y_val, return_dict=True)
    ran = len(stopped["loss"])
    best_epoch = es.best_epoch + 1
    rows = epoch_rows({"run": "full"}, full) + epoch_rows({"run": "early stopping"}, stopped)
    ctx.write_csv("results.csv", rows)
    table = [{"run": f"all {epochs} epochs", "epochs": len(full["loss"]), "val_loss": end["loss"],
              "val_accuracy": end["accuracy"], "seconds": full_secs},
             {"run": f"early stopping (patience {patience}), best restored", "epochs": ran,
              "best_epoch": best_epoch, "val_loss": restored["loss"], "val_accuracy": restored["accuracy"],
              "seconds": es_secs}]
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    marks = {"": [(best_epoch, f"best epoch {best_epoch} (restored)")]}
    if es.stopped_epoch:
        marks[""].append((es.stopped_epoch + 1, f"stopped after epoch {es.stopped_epoch + 1}"))
    ctx.plot("early_stopping.png", lambda p: plotting.learning_curves(
        full, metrics=("loss", "accuracy"), marks=marks, logy={"loss": True},
        title=f"Training for all {epochs} epochs; early stopping (patience {patience}) marked", path=p),
        "The full run's curves, with where early stopping stopped and the epoch it restored")

    min_val = min(full["val_loss"])
    findings = [
        f"The validation loss is lowest at epoch {full['val_loss'].index(min_val) + 1} ({min_val:.3g}) and ends "
        f"at {full['val_loss'][-1]:.3g} after {epochs} epochs, while the training loss keeps falling to "
        f"{full['loss'][-1]:.2g}.",
        (f"Early stopping stopped after epoch {es.stopped_epoch + 1}" if es.stopped_epoch else
         "Early stopping never fired") + f" ({ran} epochs, {es_secs:.1f} s instead of {full_secs:.1f} s) and "
        f"restored epoch {best_epoch}: validation loss {restored['loss']:.3g}, accuracy {restored['accuracy']:.3f}, "
        f"against {end['loss']:.3g} / {end['accuracy']:.3f} for the network trained to the end.",
    ]
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {data.n_features} -> {width} -> {width} ReLU -> {data.n_classes} on {len(data.x_train)} "
        f"training samples (so that it overfits); Adam lr {lr}, batch 32",
        f"fastdl.callbacks.EarlyStopping(monitor='val_loss', patience={patience}, restore_best_weights=True); "
        "a second run with the same seed trains all epochs for comparison"], findings, table=table)
    return {"table": table, "best_epoch": best_epoch, "epochs_run": ran, "full": full,
            "restored_val_loss": restored["loss"], "end_val_loss": end["loss"]}
