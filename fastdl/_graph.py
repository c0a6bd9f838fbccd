"""From a list of layers to the executable network: its stages and its flat buffers.

``build(layers, backend, input_dim, rng, dropout_seed)`` names the layers, fuses each
Dense layer with the activation and the Dropout that follow it into one stage (one
kernel call per pass), lays every parameter out in one flat float32 buffer (layer by
layer, each layer's parameters in order; the gradients and the optimizer state share
that layout) and initialises it from `rng`.

The last Dense layer may end in ``softmax`` (Keras's way of saying "this network
outputs class probabilities"): its stage computes the logits, and the network applies
softmax where Keras would -- fused into the cross-entropy loss for training, on the
outputs of ``predict``.
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any

import numpy as np

from fastdl import _device, layers as L
from fastdl._stages import BatchNormStage, DenseStage, DropoutStage, MaxoutStage

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._stages import Stage
    from fastdl._typing import DeviceArray

#: one parameter array's place in the flat buffer
ParamSlot = namedtuple("ParamSlot", "name offset shape size decay")

#: activations the network applies to its outputs rather than in a kernel epilogue
OUTPUT_ACTIVATIONS = ("softmax",)


class Graph:
    """What ``build`` returns: the stages in forward order, the stages the backward pass
    runs (last to first, stopping at the first with parameters), the flat buffers, the
    parameter layout, the weight-decay ranges and the network's input/output widths."""

    stages: list[Stage]
    bwd_stages: list[Stage]
    flat_params: DeviceArray
    flat_grads: DeviceArray
    decay_segments: npt.NDArray[np.int64]
    param_layout: tuple[ParamSlot, ...]
    input_dim: int
    output_dim: int
    output_activation: str | None
    bn_stages: list[BatchNormStage]
    max_norm_stages: list[Stage]

    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)


def input_dim_of(layers):
    """The input width the first sized layer states, or None."""
    for layer in layers:
        dim = getattr(layer, "in_features", None) or getattr(layer, "num_features", None)
        if dim is not None:
            return dim
        if not isinstance(layer, (L.Dropout, L.Activation)):
            return None
    return None


def _name_layers(layers):
    counts: dict[str, int] = {}
    for layer in layers:
        if not isinstance(layer, L.Activation):
            kind = type(layer).__name__.lower()
            layer.name = f"{kind}_{counts.get(kind, 0)}"
            counts[kind] = counts.get(kind, 0) + 1


def _dense_stage(layers, i, backend, stream):
    """The stage of layers[i] (Dense) with the activation and Dropout that follow it;
    returns (stage, parameter specs, index of the next layer, dropout streams used)."""
    layer = layers[i]
    act, alpha = layer.activation, layer.alpha
    j = i + 1
    if j < len(layers) and isinstance(layers[j], L.Activation):
        if act != "linear":
            raise ValueError(f"layers[{j}]: an activation after {layer.name}, which already applies {act!r}")
        act, alpha = layers[j].activation, layers[j].alpha
        j += 1
    output_act = None
    if act in OUTPUT_ACTIVATIONS:
        output_act, act = act, "linear"
    dropout = None
    if j < len(layers) and isinstance(layers[j], L.Dropout):
        dropout = layers[j]
        j += 1
        stream += 1
    if output_act is not None and j < len(layers):
        raise ValueError(f"layers[{i}] ({layer.name}): activation {output_act!r} only on the last layer (the "
                         "network's output, fused into the cross-entropy loss)")
    stage = DenseStage(backend, layer, act, alpha, dropout, stream)
    specs = layer.param_specs()
    if act == "prelu" and layer.activation != "prelu":  # PReLU given as its own layer
        specs.append(L.ParamSpec("alpha", (layer.out_features,),
                                 L.initializers.Constant(L.PRELU_INIT if alpha is None else alpha), False))
        if layer._init is None:
            specs[0].init = L.initializers.default_weight_init("prelu")
    elif layer._init is None and act != layer.activation and layer.activation not in OUTPUT_ACTIVATIONS:
        specs[0].init = L.initializers.default_weight_init(act)
    return stage, specs, j, stream, output_act


def _stages(layers, backend, input_dim):
    """[(stage, layer, specs)], the output width and the output activation."""
    plan = []
    dim = input_dim
    i = 0
    stream = 0
    output_act = None
    while i < len(layers):
        layer = layers[i]
        where = f"layers[{i}] ({type(layer).__name__})"
        if isinstance(layer, (L.Dense, L.Maxout)):
            if layer.in_features is None:
                layer.in_features = dim
            elif layer.in_features != dim:
                raise ValueError(f"{where}: in_features={layer.in_features} but the previous layer gives {dim}")
        if isinstance(layer, L.Dense):
            stage, specs, i, stream, output_act = _dense_stage(layers, i, backend, stream)
            dim = layer.out_features
        elif isinstance(layer, L.Maxout):
            stage, specs = MaxoutStage(backend, layer), layer.param_specs()
            dim = layer.out_features
            i += 1
        elif isinstance(layer, L.BatchNorm):
            if layer.num_features is None:
                layer.num_features = dim
            elif layer.num_features != dim:
                raise ValueError(f"{where}: num_features={layer.num_features} but the previous layer gives {dim}")
            stage, specs = BatchNormStage(backend, layer), layer.param_specs()
            i += 1
        elif isinstance(layer, L.Dropout):
            stream += 1
            stage, specs = DropoutStage(backend, layer, dim, stream), []
            i += 1
        elif isinstance(layer, L.Activation):
            prev = type(layers[i - 1]).__name__ if i else "the input"
            raise ValueError(f"{where}: activation {layer.activation!r} must follow a Dense layer (it runs in "
                             f"the dense kernel's epilogue), not {prev}; e.g. put it in the Dense layer before "
                             "the BatchNorm: Dense(..., activation='relu'), BatchNorm(n)")
        else:
            raise TypeError(f"{where}: unsupported layer")
        plan.append((stage, stage.layer, specs))
    return plan, dim, output_act


def _layout(plan):
    """[(stage, layer, spec, offset)], the total size and the decayed [start, stop) ranges."""
    offsets: list[tuple[Any, Any, Any, int]] = []
    segments: list[list[int]] = []
    pos = 0
    for stage, layer, specs in plan:
        for spec in specs:
            offsets.append((stage, layer, spec, pos))
            if spec.decay:
                if segments and segments[-1][1] == pos:
                    segments[-1][1] = pos + spec.size
                else:
                    segments.append([pos, pos + spec.size])
            pos += spec.size
    return offsets, pos, segments


def build(layers: list[L.Layer], backend: Any, input_dim: int, rng: np.random.Generator,
          dropout_seed: int) -> Graph:
    """The Graph of `layers` for inputs of width `input_dim`, its parameters drawn from
    `rng` (layer by layer, in buffer order)."""
    _name_layers(layers)
    plan, output_dim, output_act = _stages(layers, backend, input_dim)
    offsets, total, segments = _layout(plan)
    host = _device.aligned_empty(total)
    for _, _, spec, pos in offsets:
        host[pos:pos + spec.size] = np.asarray(spec.init(spec.shape, rng), np.float32).reshape(-1)
    flat_params = backend.from_host(host) if backend.name != "cpu" else host
    flat_grads = backend.zeros(total)
    stages = [stage for stage, _, _ in plan]
    views: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {id(s): ({}, {}) for s in stages}
    layout = []
    for stage, layer, spec, off in offsets:
        views[id(stage)][0][spec.name] = flat_params[off:off + spec.size].reshape(spec.shape)
        views[id(stage)][1][spec.name] = flat_grads[off:off + spec.size].reshape(spec.shape)
        layout.append(ParamSlot(f"{layer.name}.{spec.name}", off, spec.shape, spec.size, spec.decay))
        if spec.name == "w":
            stage.w_offset = off
    for stage in stages:
        stage.bind(*views[id(stage)], dropout_seed)
    # the backward pass starts at the last stage and ends at the first with parameters
    first = next((k for k, s in enumerate(stages) if views[id(s)][0]), len(stages))
    for k, s in enumerate(stages):
        s.need_dx = k > first
    return Graph(stages=stages, bwd_stages=stages[first:][::-1], flat_params=flat_params, flat_grads=flat_grads,
                 decay_segments=np.array(segments, np.int64).reshape(-1, 2), param_layout=tuple(layout),
                 input_dim=input_dim, output_dim=output_dim, output_activation=output_act,
                 bn_stages=[s for s in stages if isinstance(s, BatchNormStage)],
                 max_norm_stages=[s for s in stages if s.max_norm is not None])
