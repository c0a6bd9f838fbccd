"""ONNX export of a model's inference function, for onnxruntime, TensorRT, browsers.

    fastdl.onnx.export(model, "model.onnx")               # opset 17 by default
    import onnxruntime as ort
    sess = ort.InferenceSession("model.onnx")
    probs = sess.run(None, {"input": x})[0]               # == model.predict(x)

One float32 input "input" (batch, input_dim) and one output "output" (batch,
output_dim); the batch dimension is dynamic. The graph, per stage (the weights are
initializers named as in ``model.state_dict()``):

| fastdl | ONNX |
|---|---|
| Dense | Gemm (MatMul without a bias) |
| relu, sigmoid, tanh | Relu, Sigmoid, Tanh |
| leaky_relu, elu (alpha) | LeakyRelu, Elu |
| prelu (one slope per unit) | PRelu |
| silu | x * Sigmoid(x) |
| gelu (exact) | 0.5 x (1 + Erf(x / sqrt 2)) |
| softplus (linear above 20, PyTorch's threshold) | Where(x > 20, x, Softplus(x)) |
| hard_tanh | Clip(-1, 1) |
| Maxout | Gemm, Reshape (batch, out, pieces), ReduceMax over the pieces |
| BatchNorm | BatchNormalization (inference: running statistics) |
| Dropout | nothing (identity); Mul by 1 - p with scale_at_test |
| output softmax / fused sigmoid | Softmax(axis=1) / Sigmoid |

``probabilities=True`` appends what ``predict_proba`` applies to a model whose outputs
are logits (softmax; sigmoid for the binary cross-entropy). Needs the onnx package
(``pip install fastdl[onnx]``, which brings onnxruntime too).
"""

from __future__ import annotations

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    raise ImportError("fastdl.onnx needs the onnx package: pip install 'fastdl[onnx]'") from None

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fastdl import _export, losses as losses_mod
from fastdl._files import write_atomic

if TYPE_CHECKING:
    from fastdl._typing import PathLike
    from fastdl.network import Network

__all__ = ["export", "DEFAULT_OPSET", "MIN_OPSET"]

#: the opset written unless asked otherwise (onnxruntime >= 1.12, TensorRT >= 8.5 read it)
DEFAULT_OPSET = 17
#: the oldest opset the graph can be written in (Clip's bounds as inputs: 11; Softmax over one axis: 13)
MIN_OPSET = 13


class _Graph:
    def __init__(self, opset):
        self.opset = opset
        self.nodes, self.inits = [], []
        self._n = 0

    def fresh(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def int_const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def node(self, op, inputs, hint, **attrs):
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _activation(g, x, act, alpha, name):
    if act == "linear":
        return x
    if act in ("relu", "sigmoid", "tanh"):
        return g.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[act], [x], f"{name}.{act}")
    if act == "leaky_relu":
        return g.node("LeakyRelu", [x], f"{name}.leaky_relu", alpha=float(alpha))
    if act == "elu":
        return g.node("Elu", [x], f"{name}.elu", alpha=float(alpha))
    if act == "prelu":
        return g.node("PRelu", [x, g.const(f"{name}.alpha", alpha)], f"{name}.prelu")
    if act == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x], f"{name}.sigmoid")], f"{name}.silu")
    if act == "gelu":
        scaled = g.node("Mul", [x, g.const(f"{name}.inv_sqrt2", np.float32(1 / math.sqrt(2)))], f"{name}.scaled")
        one_plus = g.node("Add", [g.node("Erf", [scaled], f"{name}.erf"), g.const(f"{name}.one", np.float32(1))],
                          f"{name}.one_plus")
        half_x = g.node("Mul", [x, g.const(f"{name}.half", np.float32(0.5))], f"{name}.half_x")
        return g.node("Mul", [half_x, one_plus], f"{name}.gelu")
    if act == "softplus":
        above = g.node("Greater", [x, g.const(f"{name}.threshold", np.float32(20))], f"{name}.above")
        return g.node("Where", [above, x, g.node("Softplus", [x], f"{name}.softplus_raw")], f"{name}.softplus")
    if act == "hard_tanh":
        return g.node("Clip", [x, g.const(f"{name}.min", np.float32(-1)), g.const(f"{name}.max", np.float32(1))],
                      f"{name}.hard_tanh")
    raise TypeError(f"{name}: activation {act!r} has no ONNX form here")  # a new kernel activation


def _affine(g, x, w, b, name):
    wn = g.const(f"{name}.w", w)
    if b is None:
        return g.node("MatMul", [x, wn], f"{name}.matmul")
    return g.node("Gemm", [x, wn, g.const(f"{name}.b", b)], f"{name}.gemm")


def _scale(g, x, factor, name):
    return g.node("Mul", [x, g.const(f"{name}.test_scale", np.float32(factor))], f"{name}.scale")


def _graph_of(model, opset, probabilities):
    g = _Graph(opset)
    x = "input"
    for st in _export.stages_of(model, "export"):
        name = st["name"]
        if st["op"] == "dense":
            x = _activation(g, _affine(g, x, st["w"], st["b"], name), st["activation"], st["alpha"], name)
            if st["dropout"] is not None and st["dropout"]["scale_at_test"]:
                x = _scale(g, x, 1.0 - st["dropout"]["p"], name)
        elif st["op"] == "maxout":
            y = _affine(g, x, st["w"], st["b"], name)
            shape = g.int_const(f"{name}.shape", [-1, st["out_features"], st["pieces"]])
            y = g.node("Reshape", [y, shape], f"{name}.pieces")
            if opset >= 18:
                x = g.node("ReduceMax", [y, g.int_const(f"{name}.axes", [2])], f"{name}.max", keepdims=0)
            else:
                x = g.node("ReduceMax", [y], f"{name}.max", axes=[2], keepdims=0)
        elif st["op"] == "batchnorm":
            x = g.node("BatchNormalization", [x, g.const(f"{name}.gamma", st["gamma"]),
                                              g.const(f"{name}.beta", st["beta"]),
                                              g.const(f"{name}.running_mean", st["running_mean"]),
                                              g.const(f"{name}.running_var", st["running_var"])],
                       f"{name}.batchnorm", epsilon=float(st["eps"]))
        elif st["op"] == "dropout":
            if st["scale_at_test"] and st["p"]:
                x = _scale(g, x, 1.0 - st["p"], name)
    out_act = model.output_activation
    if out_act is None and probabilities:
        if isinstance(model.loss, losses_mod.BinaryCrossEntropy):
            out_act = "sigmoid"
        elif model.loss is None or isinstance(model.loss, losses_mod.SoftmaxCrossEntropy):
            out_act = "softmax"
        else:
            raise ValueError(f"probabilities: a model trained with {model.loss.name!r} outputs no class "
                             "probabilities (softmax follows a cross-entropy, sigmoid the binary one)")
    if out_act == "softmax":
        x = g.node("Softmax", [x], "softmax", axis=1)
    elif out_act == "sigmoid":
        x = g.node("Sigmoid", [x], "sigmoid")
    g.nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    return g


def export(model: Network, path: PathLike | None = None, opset: int = DEFAULT_OPSET,
           probabilities: bool = False) -> onnx.ModelProto:
    """Writes the model's inference function (what ``predict`` computes) as an ONNX
    graph to `path` (atomically; None: write nothing) and returns the onnx.ModelProto.
    opset: the ONNX operator set, MIN_OPSET to the newest the onnx package knows.
    probabilities: also apply predict_proba's softmax/sigmoid when the model outputs
    logits (softmax for a cross-entropy or an uncompiled model, sigmoid for the binary
    cross-entropy)."""
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an integer from {MIN_OPSET} to {newest} (this onnx package's newest), "
                         f"got {opset!r}")
    g = _graph_of(model, opset, probabilities)
    graph = helper.make_graph(
        g.nodes, "fastdl.Sequential",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", model.input_dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", model.output_dim])],
        initializer=g.inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastdl",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        write_atomic(path, proto.SerializeToString())
    return proto
