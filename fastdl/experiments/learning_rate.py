"""Learning rate too large, too small, just right, step decay and 1/sqrt(t+1) decay."""

import math

from fastdl import Dense, optim, schedules
from fastdl.callbacks import LearningRateScheduler
from fastdl.experiments._base import epoch_rows, final

TITLE = "Learning rate: too large, too small, and decayed"
CLAIM = ("too large a learning rate makes the loss blow up or oscillate, too small a one crawls; starting "
         "large and decaying (step, 1/sqrt(t+1)) gets the best of both")


def run(ctx):
    epochs = ctx.pick(3, 20, 40)
    data = ctx.data(n_train=ctx.pick(400, 2000, None), n_val=ctx.pick(200, 2000, None))
    step = max(1, epochs // 3)
    variants = {
        "too large (lr=2)": (2.0, None),
        "too small (lr=0.001)": (1e-3, None),
        "constant lr=0.1": (0.1, None),
        f"step decay 0.3 x0.1 every {step} epochs": (0.3, lambda: schedules.StepDecay(step, 0.1)),
        "1/sqrt(t+1) decay from 0.3": (0.3, lambda: schedules.InverseSqrtDecay()),
    }
    runs, rows, table = {}, [], []
    for label, (lr, sched) in variants.items():
        net = [Dense(data.n_features, 64, activation="relu"), Dense(64, activation="relu"), Dense(data.n_classes)]
        model = ctx.model(net, optim.SGD(lr))
        cbs = [LearningRateScheduler(sched())] if sched else []
        hist, secs = ctx.fit(model, data, epochs, batch_size=32, callbacks=cbs)
        runs[label] = hist
        rows += epoch_rows({"schedule": label}, hist)
        losses = [v for v in hist["loss"]]
        # blew up (nan), got worse, or ended no better than guessing (ln C: the loss of uniform outputs)
        diverged = (any(not math.isfinite(v) for v in losses) or losses[-1] > losses[0]
                    or losses[-1] > 0.95 * math.log(data.n_classes))
        table.append({"schedule": label, "lr_start": hist["lr"][0], "lr_end": hist["lr"][-1],
                      "loss_epoch1": losses[0], "final_loss": losses[-1],
                      "final_val_loss": final(hist, "val_loss") if not diverged else hist["val_loss"][-1],
                      "val_accuracy": hist["val_accuracy"][-1], "diverged_or_at_chance": diverged})
        ctx.log(f"{label}: final loss {losses[-1]:.4g}")
    ctx.write_csv("results.csv", rows)
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    ctx.plot("loss.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss", "accuracy"), validation=False, logy={"loss": True},
        title="Training loss and accuracy per epoch", path=p),
        "Training loss (log scale; a blown-up run leaves the chart or stays high) and accuracy")
    ctx.plot("lr.png", lambda p: plotting.line_chart(
        {k: (range(1, len(h["lr"]) + 1), h["lr"]) for k, h in runs.items()}, xlabel="epoch",
        ylabel="learning rate", logy=True, title="Learning rate per epoch", path=p), "The schedules")

    by = {r["schedule"]: r for r in table}
    big, small, const = by["too large (lr=2)"], by["too small (lr=0.001)"], by["constant lr=0.1"]
    decayed = [r for r in table if "decay" in r["schedule"]]
    bestd = min(decayed, key=lambda r: r["final_loss"] if math.isfinite(r["final_loss"]) else math.inf)
    findings = [
        f"lr=2: training loss {big['loss_epoch1']:.3g} after epoch 1 and {big['final_loss']:.3g} at the end "
        f"(validation accuracy {big['val_accuracy']:.2f}).",
        f"lr=0.001: loss only falls from {small['loss_epoch1']:.3g} to {small['final_loss']:.3g} in {epochs} epochs.",
        f"Constant lr=0.1 ends at {const['final_loss']:.3g}; the best decayed schedule ({bestd['schedule']}) at "
        f"{bestd['final_loss']:.3g}, validation accuracy {bestd['val_accuracy']:.3f} vs {const['val_accuracy']:.3f}.",
    ]
    ctx.write_summary(TITLE, CLAIM, [
        f"network: {data.n_features} -> 64 -> 64 ReLU -> {data.n_classes}; plain SGD, batch 32, {epochs} epochs",
        "schedules change the learning rate at the start of each epoch (fastdl.callbacks.LearningRateScheduler "
        "with fastdl.schedules.StepDecay / InverseSqrtDecay)"], findings, table=table)
    return {"table": table}
