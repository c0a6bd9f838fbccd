"""PyTorch exchange: a fastdl model as an equivalent ``torch.nn.Sequential``, and back.

    net = fastdl.interop.to_torch(model)          # eval mode; net.train() to train it
    model = fastdl.interop.from_torch(net)        # an uncompiled fastdl.Sequential

fastdl stores a Dense weight (in, out); ``nn.Linear`` stores (out, in): the exchange
transposes it. What maps to what:

| fastdl | PyTorch |
|---|---|
| Dense(in, out, use_bias) | nn.Linear(in, out, bias) |
| relu, sigmoid, tanh, silu | nn.ReLU, nn.Sigmoid, nn.Tanh, nn.SiLU |
| leaky_relu / elu with alpha | nn.LeakyReLU(alpha) / nn.ELU(alpha) |
| prelu (one slope per unit) | nn.PReLU(out) |
| gelu (exact), softplus (threshold 20), hard_tanh | nn.GELU(), nn.Softplus(1, 20), nn.Hardtanh(-1, 1) |
| Dropout(p) | nn.Dropout(p) |
| Dropout(p, scale_at_test=True) | fastdl.interop.ScaleAtTestDropout(p) |
| BatchNorm(n, momentum, eps) + running statistics | nn.BatchNorm1d(n, eps, momentum) |
| Maxout(in, out, pieces) | fastdl.interop.Maxout(in, out, pieces) |
| last-layer softmax / fused sigmoid | nn.Softmax(dim=1) / nn.Sigmoid() |

``from_torch`` also takes nn.Identity and a leading nn.Flatten (fastdl flattens its
inputs itself) and nested nn.Sequential; anything else is a TypeError naming the module.
Needs PyTorch (not an extra of fastdl: install the build you want).
"""

from __future__ import annotations

try:
    import torch
    from torch import nn
except ImportError:
    raise ImportError("fastdl.interop needs PyTorch: install it (https://pytorch.org, e.g. "
                      "pip install torch)") from None

from typing import TYPE_CHECKING, Any

import numpy as np

from fastdl import _export, layers as L
from fastdl.model import Sequential

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl.network import Network

__all__ = ["to_torch", "from_torch", "Maxout", "ScaleAtTestDropout"]


class Maxout(nn.Module):
    """Maxout units as fastdl computes them: a Linear(in, out * pieces) whose adjacent
    columns (pieces at a time) form one unit, then the max over each unit's pieces."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        self.in_features, self.out_features, self.pieces = in_features, out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, out_features): the max over each unit's pieces of x @ W.T + b."""
        return self.linear(x).view(x.shape[0], self.out_features, self.pieces).amax(dim=2)

    def extra_repr(self) -> str:
        """The sizes, shown in the module's repr."""
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"


class ScaleAtTestDropout(nn.Module):
    """Dropout's original formulation (fastdl's Dropout(p, scale_at_test=True)): kept
    units are not scaled in training; at inference the outputs are multiplied by 1 - p."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x with units dropped (training), or x * (1 - p) (eval)."""
        if self.training:
            return x * (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        """The drop probability, shown in the module's repr."""
        return f"p={self.p}"


def _tensor(a: npt.ArrayLike) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _activation_module(act: str, alpha: Any, out_features: int) -> Any:
    if act == "linear":
        return None
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU}
    if act in simple:
        return simple[act]()
    if act == "leaky_relu":
        return nn.LeakyReLU(negative_slope=alpha)
    if act == "elu":
        return nn.ELU(alpha=alpha)
    if act == "gelu":
        return nn.GELU(approximate="none")
    if act == "softplus":
        return nn.Softplus(beta=1.0, threshold=20.0)
    if act == "hard_tanh":
        return nn.Hardtanh(-1.0, 1.0)
    if act == "prelu":
        m = nn.PReLU(num_parameters=out_features)
        with torch.no_grad():
            m.weight.copy_(_tensor(alpha))
        return m
    raise TypeError(f"activation {act!r}: no PyTorch module for it")  # a new kernel activation


def _dropout_module(p: float, scale_at_test: bool) -> Any:
    return ScaleAtTestDropout(p) if scale_at_test else nn.Dropout(p)


def _linear(w: Any, b: Any) -> Any:
    lin = nn.Linear(w.shape[0], w.shape[1], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(_tensor(w.T))
        if b is not None:
            lin.bias.copy_(_tensor(b))
    return lin


def to_torch(model: Network, output_activation: bool = True) -> nn.Sequential:
    """An ``nn.Sequential`` that computes what ``model.predict`` does (float32, in eval
    mode: Dropout off, BatchNorm on its running statistics; ``.train()`` trains it as
    fastdl would). output_activation=False leaves out the output softmax/sigmoid, so
    the module outputs logits (for nn.CrossEntropyLoss)."""
    mods = []
    for st in _export.stages_of(model, "to_torch"):
        if st["op"] == "dense":
            mods.append(_linear(st["w"], st["b"]))
            act = _activation_module(st["activation"], st["alpha"], st["w"].shape[1])
            if act is not None:
                mods.append(act)
            if st["dropout"] is not None:
                mods.append(_dropout_module(st["dropout"]["p"], st["dropout"]["scale_at_test"]))
        elif st["op"] == "maxout":
            m = Maxout(st["w"].shape[0], st["out_features"], st["pieces"])
            with torch.no_grad():
                m.linear.weight.copy_(_tensor(st["w"].T))
                m.linear.bias.copy_(_tensor(st["b"]))
            mods.append(m)
        elif st["op"] == "batchnorm":
            n = st["gamma"].shape[0]
            bn = nn.BatchNorm1d(n, eps=st["eps"], momentum=st["momentum"])
            with torch.no_grad():
                bn.weight.copy_(_tensor(st["gamma"]))
                bn.bias.copy_(_tensor(st["beta"]))
                bn.running_mean.copy_(_tensor(st["running_mean"]))
                bn.running_var.copy_(_tensor(st["running_var"]))
            mods.append(bn)
        elif st["op"] == "dropout":
            if st["p"]:
                mods.append(_dropout_module(st["p"], st["scale_at_test"]))
    out_act = model.output_activation
    if output_activation and out_act == "softmax":
        mods.append(nn.Softmax(dim=1))
    elif output_activation and out_act == "sigmoid":
        mods.append(nn.Sigmoid())
    return nn.Sequential(*mods).eval()


def _flatten(module: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """[(path, leaf module)] of nested nn.Sequential containers."""
    if isinstance(module, nn.Sequential):
        out = []
        for name, child in module.named_children():
            out += _flatten(child, f"{prefix}{name}.")
        return out
    return [(prefix.rstrip("."), module)]


_SIMPLE = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu"}
SUPPORTED = ("Linear, ReLU, Sigmoid, Tanh, SiLU, LeakyReLU, ELU, PReLU, GELU(approximate='none'), "
             "Softplus(beta=1, threshold=20), Hardtanh(-1, 1), Dropout, BatchNorm1d (affine, with running "
             "statistics, momentum set), fastdl.interop.Maxout, fastdl.interop.ScaleAtTestDropout, a last "
             "Softmax(dim=1 or -1), Identity, a leading Flatten, nested Sequential")


def _activation_of(where: str, m: Any) -> tuple[str, float | None, Any] | None:
    """(fastdl activation name, alpha or None, PReLU slopes or None) of an activation
    module, None if m is not one; a ValueError for the variants fastdl has no kernel for."""
    if type(m) in _SIMPLE:
        return _SIMPLE[type(m)], None, None
    if isinstance(m, nn.LeakyReLU):
        return "leaky_relu", float(m.negative_slope), None
    if isinstance(m, nn.ELU):
        return "elu", float(m.alpha), None
    if isinstance(m, nn.GELU):
        if m.approximate != "none":
            raise ValueError(f"{where}: GELU(approximate={m.approximate!r}); fastdl's gelu is the exact (erf) one")
        return "gelu", None, None
    if isinstance(m, nn.Softplus):
        if m.beta != 1 or m.threshold != 20:
            raise ValueError(f"{where}: Softplus(beta={m.beta}, threshold={m.threshold}); fastdl's softplus is "
                             "beta=1, threshold=20 (PyTorch's defaults)")
        return "softplus", None, None
    if isinstance(m, nn.Hardtanh):
        if m.min_val != -1 or m.max_val != 1:
            raise ValueError(f"{where}: Hardtanh({m.min_val}, {m.max_val}); fastdl's hard_tanh clamps to [-1, 1]")
        return "hard_tanh", None, None
    if isinstance(m, nn.PReLU):
        return "prelu", None, m.weight.detach().cpu().numpy().astype(np.float32)
    return None


def from_torch(module: nn.Module, seed: int | None = None, device: str = "cpu") -> Sequential:
    """A fastdl.Sequential (not compiled) computing what `module` computes in eval mode,
    with its weights (and BatchNorm running statistics). module: an nn.Sequential of the
    modules in this module's table (nested Sequentials are flattened). An activation
    must directly follow a Linear (fastdl runs it in the Linear's kernel)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Sequential, got {type(module).__name__}")
    leaves = [(p or type(module).__name__, m) for p, m in _flatten(module)]
    # weights: [fastdl layer, {param: array}], named once the model is built
    layers: list[L.Layer] = []
    weights: list[list[Any]] = []
    pending: Any = None  # the entry of a Linear an activation may still join (fastdl fuses them)
    layer: L.Layer
    w: Any
    for k, (path, m) in enumerate(leaves):
        where = f"module {path} ({type(m).__name__})"
        act = _activation_of(where, m)
        if isinstance(m, nn.Identity):
            continue
        if isinstance(m, nn.Flatten):
            if layers:
                raise TypeError(f"{where}: a Flatten only as the first module (fastdl flattens its inputs)")
            continue
        if isinstance(m, nn.Softmax):
            if k != len(leaves) - 1 or m.dim not in (1, -1):
                raise TypeError(f"{where}: Softmax only as the last module, over dim 1 (the network's output)")
            act = ("softmax", None, None)
        if act is not None:
            if pending is None:
                raise TypeError(f"{where}: an activation must directly follow a Linear (fastdl applies it in "
                                "the Linear's kernel)")
            name, alpha, slopes = act
            if alpha is not None and not alpha >= 0:
                raise ValueError(f"{where}: slope/alpha {alpha}; fastdl's {name} takes alpha >= 0")
            dense, w = pending
            if slopes is not None:
                if slopes.size not in (1, dense.out_features):
                    raise ValueError(f"{where}: {slopes.size} slopes for {dense.out_features} units")
                w[1]["alpha"] = np.broadcast_to(slopes.reshape(-1), (dense.out_features,))
            fused = L.Dense(dense.in_features, dense.out_features, activation=name, alpha=alpha,
                            use_bias=dense.use_bias)
            layers[layers.index(dense)] = w[0] = fused
            pending = None
            continue
        pending = None
        if isinstance(m, nn.Linear):
            layer = L.Dense(m.in_features, m.out_features, use_bias=m.bias is not None)
            w = {"w": m.weight.detach().cpu().numpy().T}
            if m.bias is not None:
                w["b"] = m.bias.detach().cpu().numpy()
            layers.append(layer)
            weights.append([layer, w])
            pending = (layer, weights[-1])
        elif isinstance(m, nn.Dropout):
            layers.append(L.Dropout(m.p))
        elif isinstance(m, ScaleAtTestDropout):
            layers.append(L.Dropout(m.p, scale_at_test=True))
        elif isinstance(m, nn.BatchNorm1d):
            if not m.track_running_stats or m.running_mean is None:
                raise ValueError(f"{where}: track_running_stats=False; fastdl's BatchNorm infers with running "
                                 "statistics")
            if m.momentum is None:
                raise ValueError(f"{where}: momentum=None (a cumulative average); fastdl's BatchNorm keeps an "
                                 "exponential one: give momentum a value")
            layer = L.BatchNorm(m.num_features, momentum=m.momentum, eps=m.eps)
            n = m.num_features
            w = {"gamma": m.weight.detach().cpu().numpy() if m.affine else np.ones(n, np.float32),
                 "beta": m.bias.detach().cpu().numpy() if m.affine else np.zeros(n, np.float32),
                 "running_mean": m.running_mean.detach().cpu().numpy(),
                 "running_var": m.running_var.detach().cpu().numpy()}
            layers.append(layer)
            weights.append([layer, w])
        elif isinstance(m, Maxout):
            layer = L.Maxout(m.in_features, m.out_features, pieces=m.pieces)
            layers.append(layer)
            weights.append([layer, {"w": m.linear.weight.detach().cpu().numpy().T,
                                    "b": m.linear.bias.detach().cpu().numpy()}])
        else:
            raise TypeError(f"{where}: not supported; fastdl.interop.from_torch takes {SUPPORTED}")
    if not weights:
        raise ValueError("module: no Linear, Maxout or BatchNorm1d layer to take weights from")
    model = Sequential(layers, seed=seed, device=device)
    state = {f"{layer.name}.{k}": v for layer, w in weights for k, v in w.items()}
    model.load_state_dict(state)
    return model
