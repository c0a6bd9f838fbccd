"""The table ``model.summary()`` prints: each layer, the kernel call it became, its
output shape and parameter count, then the totals and the training step's plan."""

from fastdl._stages import BatchNormStage, DenseStage, MaxoutStage

__all__ = ["summary_text"]


def _stage_row(stage, counts, output_dim):
    layer = stage.layer
    if isinstance(stage, DenseStage):
        call = "dense_dropout" if stage.p else "dense"
        act = stage.act if stage.act == layer.activation else f"{layer.activation}, fused into the loss"
        desc = f"{layer.name} ({act}" + (f", dropout {stage.p:g})" if stage.p else ")")
        dim = layer.out_features
    elif isinstance(stage, MaxoutStage):
        call, desc, dim = "dense_maxout", f"{layer.name} ({layer.pieces} pieces)", layer.out_features
    elif isinstance(stage, BatchNormStage):
        call, desc, dim = "batchnorm", layer.name, layer.num_features
    else:
        call, desc, dim = "dropout", f"{layer.name} (p={layer.p:g})", stage.m
    return desc, call, f"(None, {dim if output_dim is None else output_dim})", f"{counts.get(layer.name, 0):,}"


def summary_text(model):
    graph = model._graph
    if graph is None:
        layers = ", ".join(repr(layer) for layer in model.layers)
        return (f"{type(model).__name__} (device={model.device}, seed={model.seed}): not built yet (the input "
                f"size is unknown)\n  layers: [{layers}]")
    counts: dict = {}
    for slot in model.param_layout:
        layer = slot.name.rsplit(".", 1)[0]
        counts[layer] = counts.get(layer, 0) + slot.size
    rows = [("Layer", "Kernel call", "Output shape", "Params")]
    for k, stage in enumerate(graph.stages):
        rows.append(_stage_row(stage, counts, graph.output_dim if k == len(graph.stages) - 1 else None))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    line = "-" * (sum(widths) + 6)
    out = [f"{type(model).__name__} (device={model.device}, input_dim={model.input_dim}, seed={model.seed}, "
           f"precision={model.precision})", line]
    for k, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            out.append(line)
    total = model.num_params
    out += [line, f"Total params: {total:,} ({total * 4 / 1024:,.1f} KiB, one flat float32 buffer)"]
    if graph.bn_stages:
        stats = 2 * sum(s.layer.num_features for s in graph.bn_stages)
        out.append(f"Non-trainable (BatchNorm running statistics): {stats:,}")
    if model.output_activation:
        out.append(f"Outputs: {model.output_activation} (predict returns it; training fuses it into the loss)")
    if model.step_plan is not None:
        out.append(f"Optimizer step: {model.step_plan.describe()}")
    return "\n".join(out)
