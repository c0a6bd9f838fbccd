"""A built network as plain data, for the exporters (fastdl.interop's PyTorch module,
fastdl.onnx's graph): one dict per stage of the network, in forward order, with host
copies of its arrays and what the kernels do with them.

    {"op": "dense", "name": "dense_0", "w": (in, out), "b": (out,) or None,
     "activation": kernel activation name, "alpha": float, (out,) slopes or None,
     "dropout": None or {"p": p, "scale_at_test": bool}}
    {"op": "maxout", "name", "w": (in, out * pieces), "b", "pieces", "out_features"}
    {"op": "batchnorm", "name", "gamma", "beta", "running_mean", "running_var", "eps", "momentum"}
    {"op": "dropout", "name", "p", "scale_at_test"}

``activation`` is what the stage's kernel applies; the network's output activation
(softmax, or a sigmoid fused into the binary cross-entropy) is ``model.output_activation``,
applied after the last stage. At inference a Dropout is the identity, or multiplies by
1 - p when ``scale_at_test``.
"""

import numpy as np

from fastdl import _device, activations
from fastdl._stages import BatchNormStage, DenseStage, DropoutStage, MaxoutStage

__all__ = ["stages_of"]


def _host(a):
    return None if a is None else np.array(_device.to_host(a), dtype=np.float32, copy=True)


def _dropout(layer):
    return None if layer is None or not layer.p else {"p": layer.p, "scale_at_test": layer.scale_at_test}


def stages_of(model, what="export"):
    """The model's stages as dicts (see the module's docstring)."""
    graph = model._require_built(what)
    out = []
    for st in graph.stages:
        name = st.layer.name
        if isinstance(st, DenseStage):
            if st.prelu:
                alpha = _host(st.alpha)
            elif st.act in activations.SCALAR_ALPHA:
                alpha = float(activations.SCALAR_ALPHA[st.act] if st.scalar_alpha is None else st.scalar_alpha)
            else:
                alpha = None
            out.append({"op": "dense", "name": name, "w": _host(st.w), "b": _host(st.b), "activation": st.act,
                        "alpha": alpha, "dropout": _dropout(st.dropout)})
        elif isinstance(st, MaxoutStage):
            out.append({"op": "maxout", "name": name, "w": _host(st.w), "b": _host(st.b), "pieces": st.pieces,
                        "out_features": st.layer.out_features})
        elif isinstance(st, BatchNormStage):
            out.append({"op": "batchnorm", "name": name, "gamma": _host(st.gamma), "beta": _host(st.beta),
                        "running_mean": _host(st.running_mean), "running_var": _host(st.running_var),
                        "eps": st.eps, "momentum": st.momentum})
        elif isinstance(st, DropoutStage):
            out.append({"op": "dropout", "name": name, "p": st.p, "scale_at_test": st.layer.scale_at_test})
        else:  # a stage this module does not know: an exporter must not guess
            raise TypeError(f"{name}: cannot export a {type(st).__name__}")
    return out
