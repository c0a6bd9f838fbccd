"""The same number of parameters: many thin layers vs one wide layer."""

import math

from fastdl import Dense, optim
from fastdl.experiments._base import best, epoch_rows, final

TITLE = "Deep vs fat: the same parameter count, different shapes"
CLAIM = ("with the same number of parameters, several narrower layers fit and generalize better than one wide "
         "layer (deep networks reuse features: modularity)")


def params(n_in, n_out, width, layers):
    return n_in * width + width + (layers - 1) * (width * width + width) + width * n_out + n_out


def width_for(budget, n_in, n_out, layers):
    """The hidden width giving about `budget` parameters with `layers` hidden layers."""
    if layers == 1:
        return max(1, round((budget - n_out) / (n_in + 1 + n_out)))
    a, b, c = layers - 1, n_in + 1 + n_out + (layers - 1), n_out - budget
    return max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


def run(ctx):
    depths = ctx.pick([1, 3], [1, 2, 3, 5], [1, 2, 3, 5, 8])
    epochs = ctx.pick(2, 30, 60)
    data = ctx.data(n_train=ctx.pick(400, 2000, None), n_val=ctx.pick(200, 2000, None))
    # the budgets: those of one hidden layer of these widths (about 2k, 7k, 29k parameters on the digits)
    fat_widths = ctx.pick([48], [24, 96, 384], [24, 96, 384, 1536])
    budgets = [params(data.n_features, data.n_classes, w, 1) for w in fat_widths]
    runs, rows, table = {}, [], []
    for budget in budgets:
        for depth in depths:
            w = width_for(budget, data.n_features, data.n_classes, depth)
            net = [Dense(data.n_features, w, activation="relu")] + [Dense(w, activation="relu")
                                                                    for _ in range(depth - 1)] + [Dense(data.n_classes)]
            model = ctx.model(net, optim.Adam(1e-3))
            hist, secs = ctx.fit(model, data, epochs)
            label = f"{budget} params: {depth} x {w}"
            runs[label] = hist
            rows += epoch_rows({"budget": budget, "layers": depth, "width": w}, hist)
            table.append({"budget": budget, "hidden_layers": depth, "width": w, "params": model.num_params,
                          "final_train_loss": final(hist, "loss"), "best_val_loss": best(hist, "val_loss", "min"),
                          "best_val_accuracy": best(hist, "val_accuracy"),
                          "val_accuracy": final(hist, "val_accuracy"), "seconds": secs})
            ctx.log(f"{label}: best val acc {table[-1]['best_val_accuracy']:.3f}")
    ctx.write_csv("results.csv", table)
    ctx.write_csv("curves.csv", rows)

    from fastdl import plotting

    ctx.plot("accuracy_vs_params.png", lambda p: plotting.line_chart(
        {f"{d} hidden layer{'s' if d > 1 else ''}": ([r["params"] for r in table if r["hidden_layers"] == d],
                                                   [r["best_val_accuracy"] for r in table if r["hidden_layers"] == d])
         for d in depths}, xlabel="parameters", ylabel="best validation accuracy", logx=True,
        title="Same parameters, different depth", path=p), "Best validation accuracy vs parameter count, per depth")
    big = budgets[-1]
    ctx.plot("curves.png", lambda p: plotting.learning_curves(
        {k: h for k, h in runs.items() if k.startswith(f"{big} params")}, metrics=("loss", "accuracy"),
        logy={"loss": True}, title=f"About {big} parameters", path=p),
        f"Learning curves at about {big} parameters")

    findings = []
    for budget in budgets:
        rs = [r for r in table if r["budget"] == budget]
        fat = next(r for r in rs if r["hidden_layers"] == 1)
        top = max(rs, key=lambda r: (r["best_val_accuracy"], -r["best_val_loss"]))
        findings.append(
            f"~{budget} parameters: best validation accuracy " + ", ".join(
                f"{r['hidden_layers']}x{r['width']} {r['best_val_accuracy']:.3f}" for r in rs) +
            _verdict(top, fat, 1.0 / len(data.x_val)))
    ctx.write_summary(TITLE, CLAIM, [
        "for each parameter budget (that of one hidden layer of {} units), ReLU networks of 1 to {} hidden "
        "layers with the width that gives that budget (counting weights and biases)".format(
            ", ".join(map(str, fat_widths)), depths[-1]),
        f"Adam lr 1e-3, batch 32, {epochs} epochs; compared on the best validation accuracy seen"],
        findings, table=table)
    return {"table": table}


def _verdict(top, fat, resolution):
    gain = top["best_val_accuracy"] - fat["best_val_accuracy"]
    if top is fat:
        return "; the single wide layer is best."
    if gain < 1.5 * resolution:
        return (f"; no shape beats the single wide layer by more than one validation sample "
                f"({resolution:.4f}).")
    return f"; best is {top['hidden_layers']}x{top['width']}, {gain:+.3f} over the single wide layer."
