"""Deep networks with and without batch normalization."""

from fastdl import BatchNorm, Dense, optim
from fastdl.callbacks import GradientMonitor
from fastdl.experiments._base import best, epoch_rows, final, first
from fastdl.monitoring import gradient_norms

TITLE = "Batch normalization in deep networks"
CLAIM = ("normalizing each layer's outputs over the mini-batch keeps a deep network trainable: a deep sigmoid "
         "network that does not learn without it learns with it, and a deep ReLU network learns faster")
# SGD's learning rate and momentum for every network. At lr 0.05 the 10-layer ReLU network
# without BatchNorm diverged at the default seed (as PyTorch does with the same weights
# and batches); 0.02 trains it at seeds 0-7. A run that still diverges (the 16 layers of
# --full can) is reported as such.
LR, MOMENTUM = 0.02, 0.9


def net(act, depth, n_in, width, n_out, bn):
    layers: list = []
    for i in range(depth):
        layers.append(Dense(n_in, width, activation=act) if i == 0 else Dense(width, activation=act))
        if bn:
            layers.append(BatchNorm(width))
    return layers + [Dense(n_out)]


def sizes(ctx):
    """(depth, width, epochs, data) for the run's size."""
    data = ctx.data(n_train=ctx.pick(400, 2000, None), n_val=ctx.pick(200, 2000, None))
    return ctx.pick(6, 10, 16), ctx.pick(32, 64, 128), ctx.pick(2, 15, 30), data


def run(ctx):
    depth, width, epochs, data = sizes(ctx)
    lr, momentum = LR, MOMENTUM
    probe = slice(0, min(256, len(data.x_train)))
    runs, rows, table, norms = {}, [], [], {}
    for act in ("sigmoid", "relu"):
        for bn in (False, True):
            label = f"{act}{' + BatchNorm' if bn else ''}"
            model = ctx.model(net(act, depth, data.n_features, width, data.n_classes, bn),
                              optim.SGD(lr, momentum=momentum))
            g0 = gradient_norms(model, data.x_train[probe], data.y_train[probe])
            norms[label] = g0
            hist, secs = ctx.fit(model, data, epochs, callbacks=[GradientMonitor(update_ratio=False)], label=label)
            runs[ctx.run_label(label)] = hist
            rows += epoch_rows({"network": label}, hist)
            layers = list(g0)
            table.append({"network": label, "params": model.num_params, "grad_first_init": g0[layers[0]],
                          "first_over_last": g0[layers[0]] / g0[layers[-1]], "loss_epoch1": first(hist, "loss"),
                          "final_loss": final(hist, "loss"), "val_accuracy": final(hist, "val_accuracy"),
                          "best_val_accuracy": best(hist, "val_accuracy"), "diverged": label in ctx.diverged,
                          "seconds": secs})
            ctx.log(f"{label}: val acc {table[-1]['val_accuracy']:.3f}")
    ctx.write_csv("results.csv", rows)
    ctx.write_csv("final.csv", table)

    from fastdl import plotting

    ctx.plot("curves.png", lambda p: plotting.learning_curves(
        runs, metrics=("loss", "accuracy"), logy={"loss": True},
        title=f"{depth} hidden layers: training (solid) and validation (dashed)", path=p),
        "Learning curves with and without batch normalization")
    ctx.plot("gradients_by_layer.png", lambda p: plotting.gradient_norms_by_depth(
        norms, title="Gradient norm per Dense layer at initialization", path=p),
        "Per-layer gradient norms at initialization")

    by = {r["network"]: r for r in table}
    findings = []
    for act in ("sigmoid", "relu"):
        a, b = by[act], by[f"{act} + BatchNorm"]
        findings.append(
            f"{act}: first/last-layer gradient ratio at initialization {a['first_over_last']:.2g} without, "
            f"{b['first_over_last']:.2g} with BatchNorm; training loss after epoch 1 {a['loss_epoch1']:.3g} vs "
            f"{b['loss_epoch1']:.3g}, after {epochs} epochs {a['final_loss']:.3g} vs {b['final_loss']:.3g}; "
            f"validation accuracy {a['val_accuracy']:.3f} vs {b['val_accuracy']:.3f}."
            + "".join(f" The {r['network']} network diverged: its numbers are from its last finite epoch "
                      "(see below)." for r in (a, b) if r["diverged"]))
    findings.append(f"Cost: BatchNorm adds {by['relu + BatchNorm']['params'] - by['relu']['params']} parameters "
                    f"(gamma, beta) and one kernel call per layer: {by['relu']['seconds']:.2f} s vs "
                    f"{by['relu + BatchNorm']['seconds']:.2f} s of training for the ReLU network.")
    ctx.write_summary(TITLE, CLAIM, [
        f"networks: {depth} hidden layers of {width} units; with BatchNorm after each hidden layer's activation "
        "(fastdl applies the activation in the dense kernel, so the order is Dense+act, BatchNorm)",
        f"SGD lr {lr} momentum {momentum}, batch 32, {epochs} epochs; validation uses the running statistics"],
        findings, table=table)
    return {"table": table}
