"""One table entry per public kernel of fastdl.kernels: how to build valid arguments
of any size, which arguments are arrays (their dims, dtype and role), the float64
reference and an error bound. The bad-input sweep, the fuzz tests, the determinism and
the concurrency tests are all driven from here, so a kernel added to
``fastdl.kernels._KERNELS`` without an entry here fails ``test_every_kernel_has_a_spec``.

Array roles: ``in`` (read only: must never be written, even on success), ``inplace``
(updated in place: must be unchanged when a call is refused), ``out`` (an ``out=``
buffer: same rule as inplace). An array with ``finite_only`` (sample weights) refuses
NaN and Inf with a ValueError naming it instead of propagating them.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

import reference as ref
import reference_losses as rl

F32 = np.dtype(np.float32)
EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Arr:
    dims: tuple  # symbols (str) or literal ints; a tuple of symbols = derived size
    dtype: tuple = (F32,)  # accepted dtypes (the first is what make() builds)
    role: str = "in"  # in | inplace | out
    any_rank: bool = False
    finite_only: bool = False  # NaN/Inf is a ValueError naming the array, not propagated


@dataclass
class Spec:
    kernel: str
    variant: str
    arrays: dict  # name -> Arr, for every array argument make() may pass
    make: object  # (rng, sizes) -> dict of keyword arguments (arrays and scalars)
    ref: object  # (args) -> tuple of float64 outputs, in the layout of outputs()
    tol: object  # (args, expected) -> tuple of absolute tolerances (arrays or floats)
    sizes: dict  # default (small) sizes, each > 1
    zero_raises: frozenset = frozenset()  # symbols whose 0 is a ValueError
    free: frozenset = frozenset()  # symbols no other argument is checked against
    also: dict = field(default_factory=dict)  # symbol -> extra argument names its errors may name
    extra_bad: tuple = ()  # (id, mutate(args) -> args, exception, argument name)
    fuzz_sizes: dict = field(default_factory=dict)  # symbol -> (lo, hi) for hypothesis
    big_sizes: dict = field(default_factory=dict)  # sizes that make the kernel use threads
    rank_free: frozenset = frozenset()  # any-rank arrays whose rank alone may change

    @property
    def id(self):
        return f"{self.kernel}[{self.variant}]" if self.variant else self.kernel

    def call(self, fn, args):
        return fn(**args)

    def outputs(self, result, args):
        """The kernel's result as a flat tuple, then the in-place buffers after the call."""
        res = result if isinstance(result, tuple) else (result,)
        return tuple(res) + tuple(args[n] for n, a in self.arrays.items() if a.role == "inplace" and n in args)


def _quiet(fn):
    def wrapped(*a, **k):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(*a, **k)
    return wrapped


def normal(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# ----------------------------------------------------------------------------- bounds
# Absolute error bounds from the standard float32 rounding analysis: a dot product of
# length k is within ~k * eps * sum|terms| of the exact value; smooth activations with
# a derivative <= 1.13 carry that through, plus their own few-ulp rounding.

def _gamma(k):
    return 2.0 * (k + 2) * EPS32


def _dot_bound(a, b, k):
    return _gamma(k) * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))


FLOOR = 1e-30  # subnormal results may be flushed to zero


# ----------------------------------------------------------------------------- dense
ACT_ALPHA = {"leaky_relu": 0.1, "elu": 0.7}


def _dense_make(act):
    def make(rng, s):
        n, k, m = s["N"], s["K"], s["M"]
        a = {"x": normal(rng, (n, k)), "w": normal(rng, (k, m), 1 / np.sqrt(max(k, 1))),
             "b": normal(rng, (m,), 0.5), "activation": act}
        if act == "prelu":
            a["alpha"] = rng.uniform(0.0, 0.5, m).astype(np.float32)
        elif act in ACT_ALPHA:
            a["alpha"] = ACT_ALPHA[act]
        return a
    return make


def _alpha(a):
    return a.get("alpha")


def _lip(a):
    """A bound on |f'| (per column for prelu): 1.13 for the fixed activations, |alpha| beyond."""
    al = a.get("alpha")
    if al is None:
        return 1.2
    return np.maximum(1.2, np.abs(np.asarray(al, dtype=np.float64)))


def _z_bound(a):
    zb = _dot_bound(a["x"], a["w"], a["x"].shape[1])
    if a.get("b") is not None:
        zb = zb + EPS32 * np.abs(a["b"].astype(np.float64))
    return zb


def dense_forward_spec(act="prelu"):
    arrays = {"x": Arr(("N", "K")), "w": Arr(("K", "M")), "b": Arr(("M",)),
              "out": Arr(("N", "M"), role="out")}
    if act == "prelu":
        arrays["alpha"] = Arr(("M",))

    def make(rng, s):
        a = _dense_make(act)(rng, s)
        a["out"] = np.full((s["N"], s["M"]), 7.0, np.float32)
        return a

    @_quiet
    def reference(a):
        y, z = ref.dense_forward(a["x"], a["w"], a["b"], act, _alpha(a))
        return (y, z) if act in ("prelu", "silu", "gelu") else (y,)

    def tol(a, exp):
        zb = _z_bound(a)
        yb = _lip(a) * zb + 4 * EPS32 * np.abs(exp[0]) + FLOOR
        return (yb, zb + FLOOR)[: len(exp)]

    extra = [
        ("activation-unknown", lambda a: {**a, "activation": "swish"}, ValueError, "activation"),
        ("activation-empty", lambda a: {**a, "activation": ""}, ValueError, "activation"),
        ("activation-case", lambda a: {**a, "activation": "ReLU"}, ValueError, "activation"),
        ("alpha-on-relu", lambda a: {**a, "activation": "relu", "alpha": 0.1}, ValueError, "alpha"),
        ("alpha-negative", lambda a: {**a, "activation": "leaky_relu", "alpha": -0.1}, ValueError, "alpha"),
        ("alpha-nan", lambda a: {**a, "activation": "elu", "alpha": float("nan")}, ValueError, "alpha"),
        ("alpha-string", lambda a: {**a, "activation": "elu", "alpha": "1"}, TypeError, "alpha"),
        ("alpha-bool", lambda a: {**a, "activation": "leaky_relu", "alpha": True}, TypeError, "alpha"),
        ("alpha-numpy-bool", lambda a: {**a, "activation": "leaky_relu", "alpha": np.True_}, TypeError, "alpha"),
        ("alpha-inf", lambda a: {**a, "activation": "elu", "alpha": float("inf")}, ValueError, "alpha"),
        ("alpha-10**400", lambda a: {**a, "activation": "elu", "alpha": 10 ** 400}, ValueError, "alpha"),
        ("alpha-past-float32", lambda a: {**a, "activation": "elu", "alpha": 1e300}, ValueError, "alpha"),
        ("alpha-1d-array", lambda a: {**a, "activation": "elu", "alpha": np.array([0.5])}, TypeError, "alpha"),
        ("x-list", lambda a: {**a, "x": a["x"].tolist()}, TypeError, "x"),
        ("x-scalar", lambda a: {**a, "x": np.float32(1.0)}, TypeError, "x"),
    ]
    if act == "prelu":
        extra += [
            ("alpha-missing", lambda a: {**a, "alpha": None}, ValueError, "alpha"),
            ("alpha-scalar", lambda a: {**a, "alpha": 0.25}, TypeError, "alpha"),
        ]
    return Spec("dense_forward", act, arrays, make, reference, tol,
                sizes={"N": 4, "K": 5, "M": 6}, extra_bad=tuple(extra),
                fuzz_sizes={"N": (0, 40), "K": (0, 40), "M": (0, 40)},
                big_sizes={"N": 300, "K": 200, "M": 130})


def dense_backward_spec(act="prelu"):
    needs_z = act in ("prelu", "silu", "gelu")
    arrays = {"dy": Arr(("N", "M")), "x": Arr(("N", "K")), "w": Arr(("K", "M"))}
    arrays["z" if needs_z else "y"] = Arr(("N", "M"))
    if act == "prelu":
        arrays["alpha"] = Arr(("M",))

    def make(rng, s):
        a = _dense_make(act)(rng, s)
        del a["b"]
        act_ = a.pop("activation")
        z = normal(rng, (s["N"], s["M"]))
        dy = normal(rng, (s["N"], s["M"]))
        out = {"dy": dy, "x": a["x"], "w": a["w"], "activation": act_}
        if needs_z:
            out["z"] = z
        elif act != "linear":
            out["y"] = ref.activation(act, z, a.get("alpha")).astype(np.float32)
        if "alpha" in a:
            out["alpha"] = a["alpha"]
        return out

    @_quiet
    def reference(a):
        dy = a["dy"].astype(np.float64)
        if needs_z:
            dx, dw, db, dal = ref.dense_backward(a["dy"], a["x"], a["w"], a["z"].astype(np.float64), act, _alpha(a))
        else:  # the derivative from y alone, as the kernel does
            y = a["y"].astype(np.float64)
            d = {"tanh": 1 - y * y, "sigmoid": y * (1 - y)}[act]
            dz = dy * d
            dx, dw, db, dal = dz @ a["w"].T.astype(np.float64), a["x"].T.astype(np.float64) @ dz, dz.sum(0), None
        return (dx, dw, db, dal) if act == "prelu" else (dx, dw, db)

    def tol(a, exp):
        dy = np.abs(a["dy"].astype(np.float64)) * _lip(a)
        if not needs_z:  # f'(z) from y: 1 - y^2 or y (1 - y), as large as y makes it
            y = np.abs(a["y"].astype(np.float64))
            dy = dy * (1.0 + y + y * y)
        n = a["x"].shape[0]
        dzb = dy + EPS32
        dxb = _gamma(a["w"].shape[1]) * (dzb @ np.abs(a["w"].T.astype(np.float64))) + 8 * EPS32 * np.abs(exp[0])
        dwb = _gamma(n) * (np.abs(a["x"].T.astype(np.float64)) @ dzb) + 8 * EPS32 * np.abs(exp[1])
        dbb = _gamma(n) * dzb.sum(0) + 8 * EPS32 * np.abs(exp[2])
        out = [dxb + FLOOR, dwb + FLOOR, dbb + FLOOR]
        if act == "prelu":
            zz = np.abs(a["z"].astype(np.float64))
            out.append(_gamma(n) * (dy * zz).sum(0) + FLOOR)
        return tuple(out)

    extra = [
        ("activation-unknown", lambda a: {**a, "activation": "swish"}, ValueError, "activation"),
        ("activation-not-str", lambda a: {**a, "activation": None}, TypeError, "activation"),
    ]
    if needs_z:
        extra.append(("z-missing", lambda a: {k: v for k, v in a.items() if k != "z"}, ValueError, "z"))
    else:
        extra.append(("y-missing", lambda a: {k: v for k, v in a.items() if k != "y"}, ValueError, "y"))
    return Spec("dense_backward", act, arrays, make, reference, tol,
                sizes={"N": 4, "K": 5, "M": 6}, extra_bad=tuple(extra),
                fuzz_sizes={"N": (0, 40), "K": (0, 40), "M": (0, 40)},
                big_sizes={"N": 300, "K": 200, "M": 130})


def matmul_spec():
    arrays = {"a": Arr(("M", "K")), "b": Arr(("K", "N")), "out": Arr(("M", "N"), role="out")}

    def make(rng, s):
        return {"a": normal(rng, (s["M"], s["K"])), "b": normal(rng, (s["K"], s["N"])),
                "out": np.full((s["M"], s["N"]), 7.0, np.float32)}

    @_quiet
    def reference(a):
        return (a["a"].astype(np.float64) @ a["b"],)

    def tol(a, exp):
        return (_dot_bound(a["a"], a["b"], a["a"].shape[1]) + FLOOR,)

    return Spec("matmul", "", arrays, make, reference, tol, sizes={"M": 4, "K": 5, "N": 6},
                fuzz_sizes={"M": (0, 40), "K": (0, 40), "N": (0, 40)},
                big_sizes={"M": 150, "K": 200, "N": 130})


# ----------------------------------------------------------------------------- losses
@_quiet
def _ce_tol(a, exp):
    x = a["logits"].astype(np.float64)
    n, c = x.shape
    # Each row: log-sum-exp in float32 (error ~ eps * (max|x| + log C)), then the
    # weighted sum of the target's terms q_i * lsm_i (error ~ C eps * sum|q_i lsm_i|).
    scale = np.abs(x).max(axis=1, keepdims=True) + 1.0 + np.log(c)
    # Sample weights scale each row's terms (times one more rounding, inside the 16 eps).
    w = _weight_of(a)
    q = np.abs(rl.smoothed_target(a["target"], c, a["label_smoothing"]))
    lsm = np.abs(rl._log_softmax(x))
    row = 4 * (c + 4) * EPS32 * (w * q * (lsm + scale)).sum(axis=1)
    loss_b = float(row.sum() / n) + 1e-6 * abs(exp[0])
    p = np.exp(-lsm)
    grad_b = 16 * EPS32 * w * (p * q.sum(axis=1, keepdims=True) + q) * np.minimum(scale, 1e3) / n \
        + 16 * EPS32 * np.abs(exp[1]) + FLOOR
    return (loss_b, grad_b)


# Per-sample weights (N,): uniform in [0, 3) with some exact zeros; the references and
# bounds take them as they are.
SAMPLE_WEIGHT = Arr(("N",), finite_only=True)


def _sample_weights(rng, n):
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    w[rng.random(n) < 0.25] = 0.0
    return w


def _weight_bad_cases():
    def set_weight(v):
        def f(a):
            w = a["sample_weight"].copy()
            w[-1] = v
            return {**a, "sample_weight": w}
        return f
    return [("sample-weight-negative", set_weight(-1.0), ValueError, "sample_weight"),
            ("sample-weight-negative-tiny", set_weight(-1e-38), ValueError, "sample_weight"),
            ("sample-weight-scalar", lambda a: {**a, "sample_weight": 1.0}, TypeError, "sample_weight")]


def _weight_of(a):
    """(w (N, 1) in float64, or 1.0 without weights) for scaling bounds."""
    w = a.get("sample_weight")
    return 1.0 if w is None else np.abs(np.asarray(w, np.float64)).reshape(-1, 1)


def softmax_ce_spec(form="labels", weighted=False):
    labels = form in ("labels", "labels32")
    ldt = np.dtype(np.int32) if form == "labels32" else np.dtype(np.int64)
    arrays = {"logits": Arr(("N", "C")),
              "target": Arr(("N",), dtype=(ldt, np.dtype(np.int64 if form == "labels32" else np.int32)))
              if labels else Arr(("N", "C"))}
    if weighted:
        arrays["sample_weight"] = SAMPLE_WEIGHT

    def make(rng, s):
        n, c = s["N"], s["C"]
        if labels:
            t = rng.integers(0, max(c, 1), n).astype(ldt)
        else:
            t = rng.random((n, c)).astype(np.float32)
            t /= np.maximum(t.sum(1, keepdims=True), 1e-30)
        a = {"logits": normal(rng, (n, c), 2.0), "target": t, "label_smoothing": 0.1}
        if weighted:
            a["sample_weight"] = _sample_weights(rng, n)
        return a

    @_quiet
    def reference(a):
        return rl.softmax_cross_entropy(a["logits"], a["target"], a["label_smoothing"], a.get("sample_weight"))

    extra = [
        ("label-smoothing-negative", lambda a: {**a, "label_smoothing": -0.1}, ValueError, "label_smoothing"),
        ("label-smoothing-above-1", lambda a: {**a, "label_smoothing": 1.5}, ValueError, "label_smoothing"),
        ("label-smoothing-nan", lambda a: {**a, "label_smoothing": float("nan")}, ValueError, "label_smoothing"),
        ("label-smoothing-bool", lambda a: {**a, "label_smoothing": True}, TypeError, "label_smoothing"),
        ("label-smoothing-10**400", lambda a: {**a, "label_smoothing": 10 ** 400}, ValueError, "label_smoothing"),
        ("label-smoothing-str", lambda a: {**a, "label_smoothing": "0.1"}, TypeError, "label_smoothing"),
    ]
    if weighted:
        extra += _weight_bad_cases()
    if labels:
        def set_label(v, dt=None):
            def f(a):
                t = a["target"].astype(dt or a["target"].dtype)
                t[-1] = v
                return {**a, "target": t}
            return f
        extra += [
            ("label-negative", set_label(-1), ValueError, "target"),
            ("label-equals-C", lambda a: set_label(a["logits"].shape[1])(a), ValueError, "target"),
            ("label-int32-min", set_label(np.iinfo(np.int32).min, np.int32), ValueError, "target"),
            ("label-huge-int64", set_label(2 ** 40, np.int64), ValueError, "target"),
            ("label-int64-max", set_label(np.iinfo(np.int64).max, np.int64), ValueError, "target"),
            ("labels-float64", lambda a: {**a, "target": a["target"].astype(np.float64)}, TypeError, "target"),
            ("labels-float32-1d", lambda a: {**a, "target": a["target"].astype(np.float32)}, ValueError, "target"),
            ("labels-uint8", lambda a: {**a, "target": a["target"].astype(np.uint8)}, TypeError, "target"),
            ("labels-int16", lambda a: {**a, "target": a["target"].astype(np.int16)}, TypeError, "target"),
            ("labels-list", lambda a: {**a, "target": a["target"].tolist()}, TypeError, "target"),
        ]
    return Spec("softmax_cross_entropy", form + ("+weights" if weighted else ""), arrays, make, reference,
                _ce_tol, sizes={"N": 4, "C": 5}, zero_raises=frozenset({"N", "C"}), extra_bad=tuple(extra),
                free=frozenset({"C"}) if labels else frozenset(),
                fuzz_sizes={"N": (1, 40), "C": (1, 40)}, big_sizes={"N": 300, "C": 200})


def _elementwise_spec(kernel, xname, weighted=False):
    arrays = {xname: Arr(("A", "B"), any_rank=True), "target": Arr(("A", "B"), any_rank=True)}
    if weighted:  # one weight per sample, a row along the first axis
        arrays["sample_weight"] = Arr(("A",), finite_only=True)

    def make(rng, s):
        shape = (s["A"], s["B"])
        t = normal(rng, shape) if kernel == "mse" else rng.random(shape).astype(np.float32)
        a = {xname: normal(rng, shape, 2.0), "target": t}
        if weighted:
            a["sample_weight"] = _sample_weights(rng, s["A"])
        return a

    @_quiet
    def reference(a):
        f = rl.mse if kernel == "mse" else rl.binary_cross_entropy
        return f(a[xname], a["target"], a.get("sample_weight"))

    def tol(a, exp):
        x = np.abs(a[xname].astype(np.float64))
        t = np.abs(a["target"].astype(np.float64))
        size = x.size
        w = _weight_of(a)
        if kernel == "mse":
            terms = w * (x + t) ** 2
            return (float(16 * EPS32 * terms.mean()) + FLOOR, 8 * EPS32 * w * (x + t) * 2 / size + FLOOR)
        terms = w * (x * (1 + t) + 1.0)
        return (float(16 * EPS32 * terms.mean()) + FLOOR,
                16 * EPS32 * w / size + 4 * EPS32 * np.abs(exp[1]) + FLOOR)

    return Spec(kernel, "weights" if weighted else "", arrays, make, reference, tol, sizes={"A": 4, "B": 5},
                zero_raises=frozenset({"A", "B"}), fuzz_sizes={"A": (1, 40), "B": (1, 40)},
                big_sizes={"A": 400, "B": 300}, extra_bad=tuple(_weight_bad_cases()) if weighted else ())


# ----------------------------------------------------------------------------- batch norm
def _bn_tol_y(x, gamma, invstd, exp_y):
    x = x.astype(np.float64)
    g = 1.0 if gamma is None else np.abs(gamma.astype(np.float64))
    colmax = np.abs(x).max(axis=0) if x.shape[0] else np.zeros(x.shape[1])
    return 8 * EPS32 * (colmax * invstd * g + np.abs(exp_y)) + 1e-6 * g + FLOOR


def bn_train_spec():
    arrays = {"x": Arr(("N", "M")), "gamma": Arr(("M",)), "beta": Arr(("M",)),
              "running_mean": Arr(("M",), role="inplace"), "running_var": Arr(("M",), role="inplace")}

    def make(rng, s):
        m = s["M"]
        return {"x": normal(rng, (s["N"], m), 2.0) + 1.0, "gamma": normal(rng, (m,)), "beta": normal(rng, (m,)),
                "running_mean": normal(rng, (m,)), "running_var": rng.uniform(0.5, 2, m).astype(np.float32),
                "momentum": 0.1, "eps": 1e-5}

    @_quiet
    def reference(a):
        y, mean, invstd, rm, rv = rl.batchnorm_forward_train(a["x"], a["gamma"], a["beta"], a["running_mean"],
                                                             a["running_var"], a["momentum"], a["eps"])
        return y, mean, invstd, rm, rv

    def tol(a, exp):
        x = a["x"].astype(np.float64)
        colmax = np.abs(x).max(axis=0)
        var = exp[2] ** -2.0
        return (_bn_tol_y(a["x"], a["gamma"], exp[2], exp[0]),
                8 * EPS32 * colmax + FLOOR,
                8 * EPS32 * exp[2] * (1 + colmax ** 2 / var) + FLOOR,
                8 * EPS32 * (np.abs(exp[3]) + colmax) + FLOOR,
                8 * EPS32 * (np.abs(exp[4]) + colmax ** 2) + FLOOR)

    extra = [
        ("momentum-negative", lambda a: {**a, "momentum": -0.1}, ValueError, "momentum"),
        ("momentum-above-1", lambda a: {**a, "momentum": 1.5}, ValueError, "momentum"),
        ("momentum-nan", lambda a: {**a, "momentum": float("nan")}, ValueError, "momentum"),
        ("eps-negative", lambda a: {**a, "eps": -1e-5}, ValueError, "eps"),
        ("eps-inf", lambda a: {**a, "eps": float("inf")}, ValueError, "eps"),
        ("eps-nan", lambda a: {**a, "eps": float("nan")}, ValueError, "eps"),
        ("momentum-bool", lambda a: {**a, "momentum": True}, TypeError, "momentum"),
        ("eps-bool", lambda a: {**a, "eps": False}, TypeError, "eps"),
        ("eps-10**400", lambda a: {**a, "eps": 10 ** 400}, ValueError, "eps"),
        ("single-sample", lambda a: {**a, "x": a["x"][:1].copy()}, ValueError, "x"),
    ]
    return Spec("batchnorm_forward_train", "", arrays, make, reference, tol, sizes={"N": 4, "M": 5},
                free=frozenset({"N"}),
                zero_raises=frozenset({"N"}), extra_bad=tuple(extra),
                fuzz_sizes={"N": (2, 40), "M": (0, 40)}, big_sizes={"N": 300, "M": 200})


def bn_eval_spec():
    arrays = {"x": Arr(("N", "M")), "gamma": Arr(("M",)), "beta": Arr(("M",)),
              "running_mean": Arr(("M",)), "running_var": Arr(("M",))}

    def make(rng, s):
        m = s["M"]
        return {"x": normal(rng, (s["N"], m), 2.0), "gamma": normal(rng, (m,)), "beta": normal(rng, (m,)),
                "running_mean": normal(rng, (m,)), "running_var": rng.uniform(0.5, 2, m).astype(np.float32),
                "eps": 1e-5}

    @_quiet
    def reference(a):
        return (rl.batchnorm_forward_eval(a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"],
                                          a["eps"]),)

    def tol(a, exp):
        invstd = 1 / np.sqrt(a["running_var"].astype(np.float64) + a["eps"])
        x = np.abs(a["x"].astype(np.float64)) + np.abs(a["running_mean"].astype(np.float64))
        g = np.abs(a["gamma"].astype(np.float64))
        return (8 * EPS32 * (x * invstd * g + np.abs(exp[0]) + np.abs(a["beta"])) + FLOOR,)

    extra = [
        ("running-mean-none", lambda a: {**a, "running_mean": None}, ValueError, "running_mean"),
        ("eps-negative", lambda a: {**a, "eps": -1.0}, ValueError, "eps"),
    ]
    return Spec("batchnorm_forward_eval", "", arrays, make, reference, tol, sizes={"N": 4, "M": 5},
                free=frozenset({"N"}),
                extra_bad=tuple(extra), fuzz_sizes={"N": (0, 40), "M": (0, 40)}, big_sizes={"N": 300, "M": 200})


def bn_backward_spec():
    arrays = {"dy": Arr(("N", "M")), "x": Arr(("N", "M")), "gamma": Arr(("M",)),
              "save_mean": Arr(("M",)), "save_invstd": Arr(("M",))}

    def make(rng, s):
        n, m = s["N"], s["M"]
        x = normal(rng, (n, m), 2.0) + 1.0
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x64 = x.astype(np.float64)
            mean = x64.mean(0) if n else np.zeros(m)
            invstd = 1 / np.sqrt(((x64 - mean) ** 2).mean(0) + 1e-5) if n else np.ones(m)
        return {"dy": normal(rng, (n, m)), "x": x, "gamma": normal(rng, (m,)),
                "save_mean": mean.astype(np.float32), "save_invstd": invstd.astype(np.float32)}

    @_quiet
    def reference(a):
        # From the saved statistics as given (the kernel's contract).
        dy = a["dy"].astype(np.float64)
        n = dy.shape[0]
        xhat = (a["x"].astype(np.float64) - a["save_mean"]) * a["save_invstd"].astype(np.float64)
        g = a["gamma"].astype(np.float64)
        dbeta = dy.sum(0)
        dgamma = (dy * xhat).sum(0)
        dx = g * a["save_invstd"] * (dy - dbeta / n - xhat * dgamma / n) if n else np.zeros_like(dy)
        return dx, dgamma, dbeta

    def tol(a, exp):
        dy = np.abs(a["dy"].astype(np.float64))
        n = dy.shape[0]
        xhat = np.abs((a["x"].astype(np.float64) - a["save_mean"]) * a["save_invstd"])
        xmag = (np.abs(a["x"].astype(np.float64)) + np.abs(a["save_mean"])) * a["save_invstd"]
        dgb = _gamma(n) * (dy * (xhat + xmag)).sum(0)
        dbb = _gamma(n) * dy.sum(0)
        g = np.abs(a["gamma"].astype(np.float64)) * a["save_invstd"]
        dxb = g * (8 * EPS32 * dy + (dbb + dgb * (xhat + xmag).max(0, initial=0)) / max(n, 1)
                   + 8 * EPS32 * (dy.sum(0) + (dy * xhat).sum(0) * xhat) / max(n, 1)) + 8 * EPS32 * np.abs(exp[0])
        return (dxb + FLOOR, dgb + FLOOR, dbb + FLOOR)

    return Spec("batchnorm_backward", "", arrays, make, reference, tol, sizes={"N": 4, "M": 5},
                fuzz_sizes={"N": (0, 40), "M": (0, 40)}, big_sizes={"N": 300, "M": 200})


# ----------------------------------------------------------------------------- maxout
PIECES = 3


def _pieces_bad(extra_name="pieces"):
    return [
        ("pieces-zero", lambda a: {**a, "pieces": 0}, ValueError, "pieces"),
        ("pieces-negative", lambda a: {**a, "pieces": -3}, ValueError, "pieces"),
        ("pieces-256", lambda a: {**a, "pieces": 256}, ValueError, "pieces"),
        ("pieces-float", lambda a: {**a, "pieces": 3.0}, TypeError, "pieces"),
        ("pieces-bool", lambda a: {**a, "pieces": True}, TypeError, "pieces"),
        ("pieces-str", lambda a: {**a, "pieces": "3"}, TypeError, "pieces"),
        ("pieces-none", lambda a: {**a, "pieces": None}, TypeError, "pieces"),
        ("pieces-numpy-bool", lambda a: {**a, "pieces": np.True_}, TypeError, "pieces"),
        ("pieces-2**70", lambda a: {**a, "pieces": 2 ** 70}, ValueError, "pieces"),
        ("pieces-array", lambda a: {**a, "pieces": np.array([3])}, TypeError, "pieces"),
    ]


def _argmax_bad():
    def setv(v):
        def f(a):
            am = a["argmax"].copy()
            am.flat[-1] = v
            return {**a, "argmax": am}
        return f
    return [("argmax-equals-pieces", setv(PIECES), IndexError, "argmax"),
            ("argmax-255", setv(255), IndexError, "argmax")]


def _group_max(z64, pieces):
    n, cols = z64.shape
    return z64.reshape(n, cols // pieces, pieces)


def maxout_forward_spec():
    arrays = {"z": Arr(("N", ("M",)))}

    def make(rng, s):
        z = normal(rng, (s["N"], s["M"] * PIECES))
        z[::2, 1::PIECES] = z[::2, 0::PIECES]  # exact ties in every other row: the first wins
        return {"z": z, "pieces": PIECES}

    @_quiet
    def reference(a):
        g = _group_max(a["z"].astype(np.float64), a["pieces"])
        return g.max(axis=2), g.argmax(axis=2)

    def tol(a, exp):
        return (0.0, 0.0)  # exact, first maximum wins ties

    extra = _pieces_bad() + [("pieces-does-not-divide", lambda a: {**a, "pieces": 4}, ValueError, "pieces")]
    return Spec("maxout_forward", "", arrays, make, reference, tol, sizes={"N": 4, "M": 5},
                free=frozenset({"N"}),
                also={"M": ("pieces",)}, extra_bad=tuple(extra),
                fuzz_sizes={"N": (0, 40), "M": (0, 40)}, big_sizes={"N": 400, "M": 300})


def maxout_backward_spec():
    arrays = {"dy": Arr(("N", "M")), "argmax": Arr(("N", "M"), dtype=(np.dtype(np.uint8),))}

    def make(rng, s):
        return {"dy": normal(rng, (s["N"], s["M"])),
                "argmax": rng.integers(0, PIECES, (s["N"], s["M"])).astype(np.uint8), "pieces": PIECES}

    def reference(a):
        n, m = a["dy"].shape
        dz = np.zeros((n, m, a["pieces"]))
        np.put_along_axis(dz, a["argmax"][..., None].astype(np.intp), a["dy"][..., None].astype(np.float64), axis=2)
        return (dz.reshape(n, m * a["pieces"]),)

    return Spec("maxout_backward", "", arrays, make, reference, lambda a, e: (0.0,), sizes={"N": 4, "M": 5},
                extra_bad=tuple(_pieces_bad()[:-1] + _argmax_bad()),
                fuzz_sizes={"N": (0, 40), "M": (0, 40)}, big_sizes={"N": 400, "M": 300})


class _MaxoutOutputs(Spec):
    @_quiet
    def outputs(self, result, args):
        # The argmax may pick any piece within rounding of the maximum: report the
        # float64 pre-activation of the chosen piece, to be held to the group maximum.
        y, am = result
        z64 = args["x"].astype(np.float64) @ args["w"].astype(np.float64)
        if args.get("b") is not None:
            z64 = z64 + args["b"]
        g = _group_max(z64, args["pieces"])
        assert am.dtype == np.uint8 and (am < args["pieces"]).all()
        chosen = np.take_along_axis(g, am[..., None].astype(np.intp), axis=2)[..., 0]
        return (y, chosen)


def dense_maxout_forward_spec():
    arrays = {"x": Arr(("N", "K")), "w": Arr(("K", ("M",))), "b": Arr((("M",),))}

    def make(rng, s):
        n, k, m = s["N"], s["K"], s["M"] * PIECES
        return {"x": normal(rng, (n, k)), "w": normal(rng, (k, m), 1 / np.sqrt(max(k, 1))),
                "b": normal(rng, (m,), 0.5), "pieces": PIECES}

    @_quiet
    def reference(a):
        z = a["x"].astype(np.float64) @ a["w"] + a["b"]
        g = _group_max(z, a["pieces"])
        mx = g.max(axis=2)
        return (mx, mx)

    def tol(a, exp):
        zb = _z_bound(a)
        gb = _group_max(zb, a["pieces"]).max(axis=2, initial=0.0) + FLOOR
        return (gb, 2 * gb)

    extra = _pieces_bad() + [("pieces-does-not-divide", lambda a: {**a, "pieces": 4}, ValueError, "pieces")]
    return _MaxoutOutputs("dense_maxout_forward", "", arrays, make, reference, tol,
                          sizes={"N": 4, "K": 5, "M": 6}, also={"M": ("pieces",)}, extra_bad=tuple(extra),
                          free=frozenset({"N"}),
                          fuzz_sizes={"N": (0, 40), "K": (0, 40), "M": (0, 20)},
                          big_sizes={"N": 150, "K": 200, "M": 60})


def dense_maxout_backward_spec():
    arrays = {"dy": Arr(("N", "M")), "x": Arr(("N", "K")), "w": Arr(("K", ("M",))),
              "argmax": Arr(("N", "M"), dtype=(np.dtype(np.uint8),))}

    def make(rng, s):
        n, k, m = s["N"], s["K"], s["M"]
        return {"dy": normal(rng, (n, m)), "x": normal(rng, (n, k)),
                "w": normal(rng, (k, m * PIECES), 1 / np.sqrt(max(k, 1))),
                "argmax": rng.integers(0, PIECES, (n, m)).astype(np.uint8), "pieces": PIECES}

    @_quiet
    def reference(a):
        dz = maxout_backward_spec().ref(a)[0]
        return dz @ a["w"].T.astype(np.float64), a["x"].T.astype(np.float64) @ dz, dz.sum(0)

    def tol(a, exp):
        dz = np.abs(maxout_backward_spec().ref(a)[0])
        n = dz.shape[0]
        return (_gamma(dz.shape[1]) * (dz @ np.abs(a["w"].T.astype(np.float64))) + FLOOR,
                _gamma(n) * (np.abs(a["x"].T.astype(np.float64)) @ dz) + FLOOR,
                _gamma(n) * dz.sum(0) + FLOOR)

    return Spec("dense_maxout_backward", "", arrays, make, reference, tol, sizes={"N": 4, "K": 5, "M": 6},
                also={"M": ("pieces",)}, extra_bad=tuple(_pieces_bad() + _argmax_bad()),
                fuzz_sizes={"N": (0, 40), "K": (0, 40), "M": (0, 20)}, big_sizes={"N": 150, "K": 200, "M": 60})


# ----------------------------------------------------------------------------- dropout
# A dropped element is exactly 0 whatever it held (a select, not a multiply by 0): NaN
# and Inf propagate through kept elements only. (PyTorch multiplies, so NaN * 0 = NaN.)
def _rng_bad():
    return [
        ("p-negative", lambda a: {**a, "p": -0.1}, ValueError, "p"),
        ("p-one", lambda a: {**a, "p": 1.0}, ValueError, "p"),
        ("p-above-one", lambda a: {**a, "p": 1.5}, ValueError, "p"),
        ("p-nan", lambda a: {**a, "p": float("nan")}, ValueError, "p"),
        ("p-inf", lambda a: {**a, "p": float("inf")}, ValueError, "p"),
        ("p-str", lambda a: {**a, "p": "0.5"}, TypeError, "p"),
        ("p-none", lambda a: {**a, "p": None}, TypeError, "p"),
        ("p-bool", lambda a: {**a, "p": False}, TypeError, "p"),
        ("p-numpy-bool", lambda a: {**a, "p": np.False_}, TypeError, "p"),
        ("p-10**400", lambda a: {**a, "p": 10 ** 400}, ValueError, "p"),
        ("p-array", lambda a: {**a, "p": np.array([0.3])}, TypeError, "p"),
    ]


def _seed_bad():
    return [
        ("seed-negative", lambda a: {**a, "seed": -1}, ValueError, "seed"),
        ("seed-2**64", lambda a: {**a, "seed": 2 ** 64}, ValueError, "seed"),
        ("seed-float", lambda a: {**a, "seed": 1.5}, TypeError, "seed"),
        ("seed-numpy-bool", lambda a: {**a, "seed": np.True_}, TypeError, "seed"),
        ("seed-str", lambda a: {**a, "seed": "1"}, TypeError, "seed"),
        ("step-negative", lambda a: {**a, "step": -1}, ValueError, "step"),
        ("step-2**32", lambda a: {**a, "step": 2 ** 32}, ValueError, "step"),
        ("stream-2**32", lambda a: {**a, "stream": 2 ** 32}, ValueError, "stream"),
        ("stream-none", lambda a: {**a, "stream": None}, TypeError, "stream"),
    ]


def _keep(size, a):
    import philox_reference as ph
    return ph.keep_mask(size, a["p"], a["seed"], a["step"], a.get("stream", 0))


def _pack(keep):
    return np.packbits(keep.astype(np.uint8), bitorder="little").astype(np.float64)


def _scale(a):
    return 1.0 / (1.0 - a["p"]) if a.get("scale", True) else 1.0


def _probe_mask(rng, size):
    """Random keep bits, with the middle and last elements kept: the NaN/Inf sweep puts
    its values there and needs them to reach the output."""
    mask = rng.integers(0, 256, (size + 7) // 8).astype(np.uint8)
    for i in {size // 2, size - 1} if size else ():
        mask[i >> 3] |= np.uint8(1 << (i & 7))
    return mask


def dropout_forward_spec():
    arrays = {"x": Arr(("A", "B"), any_rank=True), "out": Arr(("A", "B"), role="out", any_rank=True)}

    def make(rng, s):
        shape = (s["A"], s["B"])
        return {"x": normal(rng, shape), "p": 0.3, "seed": 12345, "step": 7, "stream": 2, "scale": True,
                "out": np.full(shape, 7.0, np.float32)}

    @_quiet
    def reference(a):
        x = a["x"].astype(np.float64)
        keep = _keep(x.size, a).reshape(x.shape)
        return np.where(keep, x * _scale(a), 0.0), _pack(keep.ravel())

    def tol(a, exp):
        return (2 * EPS32 * np.abs(exp[0]) + FLOOR, 0.0)

    return Spec("dropout_forward", "", arrays, make, reference, tol, sizes={"A": 4, "B": 5},
                extra_bad=tuple(_rng_bad() + _seed_bad()), fuzz_sizes={"A": (0, 40), "B": (0, 40)},
                big_sizes={"A": 500, "B": 400})


def dropout_backward_spec():
    arrays = {"dy": Arr(("A", "B"), any_rank=True), "mask": Arr((("A", "B"),), dtype=(np.dtype(np.uint8),))}

    def make(rng, s):
        shape = (s["A"], s["B"])
        size = s["A"] * s["B"]
        return {"dy": normal(rng, shape), "mask": _probe_mask(rng, size), "p": 0.3, "scale": True}

    @_quiet
    def reference(a):
        dy = a["dy"].astype(np.float64)
        keep = np.unpackbits(a["mask"], bitorder="little")[: dy.size].astype(bool).reshape(dy.shape)
        return (np.where(keep, dy * _scale(a), 0.0),)

    def tol(a, exp):
        return (2 * EPS32 * np.abs(exp[0]) + FLOOR,)

    # sizes chosen so that one more row or column changes the mask's byte count
    return Spec("dropout_backward", "", arrays, make, reference, tol, sizes={"A": 4, "B": 6},
                rank_free=frozenset({"dy"}), extra_bad=tuple(_rng_bad()),
                fuzz_sizes={"A": (0, 40), "B": (0, 40)}, big_sizes={"A": 500, "B": 400})


DROP_ACT = "prelu"


def dense_dropout_forward_spec():
    arrays = {"x": Arr(("N", "K")), "w": Arr(("K", "M")), "b": Arr(("M",)), "alpha": Arr(("M",))}

    def make(rng, s):
        a = _dense_make(DROP_ACT)(rng, s)
        a.update(p=0.25, seed=99, step=3, stream=1, scale=True)
        return a

    @_quiet
    def reference(a):
        y, z = ref.dense_forward(a["x"], a["w"], a["b"], DROP_ACT, a["alpha"])
        keep = _keep(y.size, a).reshape(y.shape)
        return np.where(keep, y * _scale(a), 0.0), _pack(keep.ravel()), z

    def tol(a, exp):
        zb = _z_bound(a)
        return ((_lip(a) * zb + 4 * EPS32 * np.abs(exp[0])) * _scale(a) + FLOOR, 0.0, zb + FLOOR)

    extra = _rng_bad() + _seed_bad() + [
        ("activation-unknown", lambda a: {**a, "activation": "swish"}, ValueError, "activation"),
        ("alpha-missing", lambda a: {**a, "alpha": None}, ValueError, "alpha"),
    ]
    return Spec("dense_dropout_forward", "", arrays, make, reference, tol, sizes={"N": 4, "K": 5, "M": 6},
                free=frozenset({"N"}),
                extra_bad=tuple(extra), fuzz_sizes={"N": (0, 40), "K": (0, 40), "M": (0, 40)},
                big_sizes={"N": 300, "K": 200, "M": 130})


def dense_dropout_backward_spec():
    arrays = {"dy": Arr(("N", "M")), "x": Arr(("N", "K")), "w": Arr(("K", "M")),
              "mask": Arr((("N", "M"),), dtype=(np.dtype(np.uint8),)), "z": Arr(("N", "M")), "alpha": Arr(("M",))}

    def make(rng, s):
        n, k, m = s["N"], s["K"], s["M"]
        return {"dy": normal(rng, (n, m)), "x": normal(rng, (n, k)), "w": normal(rng, (k, m), 1 / np.sqrt(max(k, 1))),
                "activation": DROP_ACT, "mask": _probe_mask(rng, n * m),
                "p": 0.25, "z": normal(rng, (n, m)), "alpha": rng.uniform(0, 0.5, m).astype(np.float32),
                "scale": True}

    def _dy_eff(a):
        dy = a["dy"].astype(np.float64)
        keep = np.unpackbits(a["mask"], bitorder="little")[: dy.size].astype(bool).reshape(dy.shape)
        return np.where(keep, dy * _scale(a), 0.0)

    @_quiet
    def reference(a):
        return ref.dense_backward(_dy_eff(a), a["x"], a["w"], a["z"].astype(np.float64), DROP_ACT, a["alpha"])

    def tol(a, exp):
        inner = dense_backward_spec("prelu")
        b = {**a, "dy": (np.abs(_dy_eff(a)) * (1 + 2 * EPS32)).astype(np.float64)}
        return inner.tol(b, exp)

    extra = _rng_bad() + [("z-missing", lambda a: {k: v for k, v in a.items() if k != "z"}, ValueError, "z")]
    # sizes chosen so that one more row or column changes the mask's byte count
    return Spec("dense_dropout_backward", "", arrays, make, reference, tol, sizes={"N": 4, "K": 5, "M": 6},
                extra_bad=tuple(extra), fuzz_sizes={"N": (0, 40), "K": (0, 40), "M": (0, 40)},
                big_sizes={"N": 300, "K": 200, "M": 130})


# ----------------------------------------------------------------------------- optimizers
# Active once fastdl.kernels exports them (the optimizer branch): each step updates
# params and its state in place; the kernel returns None.

def _decay_mask(a, n):
    seg = a.get("decay_segments")
    if seg is None:
        return np.ones(n)
    mask = np.zeros(n)
    for s0, s1 in seg:
        mask[s0:s1] = 1.0
    return mask


def _f64(a, names):
    return {k: a[k].astype(np.float64) for k in names}


def _optim_spec(kernel, states, kwargs, step_ref, extra=(), tol_extra=None):
    arrays = {"params": Arr(("P",), role="inplace"), "grads": Arr(("P",))}
    for s in states:
        arrays[s] = Arr(("P",), role="inplace")
    arrays["decay_segments"] = Arr(("S", 2), dtype=(np.dtype(np.int64),))

    def make(rng, s):
        n = s["P"]
        a = {"params": normal(rng, (n,)), "grads": normal(rng, (n,), 0.5)}
        for st in states:
            a[st] = np.abs(normal(rng, (n,), 0.1)) if st in ("exp_avg_sq", "sum_sq", "square_avg", "acc_delta") \
                else normal(rng, (n,), 0.1)
        a.update(kwargs)
        half = n // 2
        a["decay_segments"] = np.array([[0, half], [half + 1, n]] if n > 1 else [[0, n]], np.int64)[: s.get("S", 2)]
        return a

    @_quiet
    def reference(a):
        b = _f64(a, ["params", "grads", *states])
        step_ref(b, a, _decay_mask(a, a["params"].shape[0]))
        return (None, b["params"], *(b[s] for s in states))

    def tol(a, exp):
        out = [None]
        for name, e in zip(["params", *states], exp[1:]):
            mags = np.abs(a[name].astype(np.float64)) + np.abs(e) + np.abs(a["grads"].astype(np.float64)) ** 2 \
                + np.abs(a["grads"].astype(np.float64))
            out.append(64 * EPS32 * mags + FLOOR)
        if tol_extra:
            more = tol_extra(a)
            out = [o if i == 0 else o + more.get(n, 0.0) for i, (o, n) in enumerate(zip(out, [None, "params", *states]))]
        return tuple(out)

    lr_bad = [] if "lr" not in kwargs else [
        ("lr-zero", lambda a: {**a, "lr": 0.0}, ValueError, "lr"),
        ("lr-negative", lambda a: {**a, "lr": -1e-3}, ValueError, "lr"),
        ("lr-nan", lambda a: {**a, "lr": float("nan")}, ValueError, "lr"),
        ("lr-inf", lambda a: {**a, "lr": float("inf")}, ValueError, "lr"),
        ("lr-str", lambda a: {**a, "lr": "0.1"}, TypeError, "lr"),
        ("lr-bool", lambda a: {**a, "lr": True}, TypeError, "lr"),
        ("lr-10**400", lambda a: {**a, "lr": 10 ** 400}, ValueError, "lr"),
        ("lr-past-float32", lambda a: {**a, "lr": 1e300}, ValueError, "lr"),
    ]
    seg_bad = [
        ("decay-segments-negative", lambda a: {**a, "decay_segments": np.array([[-1, 2]], np.int64)}, ValueError,
         "decay_segments"),
        ("decay-segments-past-end", lambda a: {**a, "decay_segments": np.array([[0, a["params"].size + 1]], np.int64)},
         ValueError, "decay_segments"),
        ("decay-segments-reversed", lambda a: {**a, "decay_segments": np.array([[3, 1]], np.int64)}, ValueError,
         "decay_segments"),
        ("weight-decay-negative", lambda a: {**a, "weight_decay": -0.1}, ValueError, "weight_decay"),
        ("l1-nan", lambda a: {**a, "l1": float("nan")}, ValueError, "l1"),
        ("weight-decay-inf", lambda a: {**a, "weight_decay": float("inf")}, ValueError, "weight_decay"),
        ("weight-decay-bool", lambda a: {**a, "weight_decay": True}, TypeError, "weight_decay"),
    ]
    variant = ",".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("lr", "step"))
    return Spec(kernel, variant, arrays, make, reference, tol, sizes={"P": 37, "S": 2},
                free=frozenset({"S"}), extra_bad=tuple(lr_bad + seg_bad + list(extra)),
                fuzz_sizes={"P": (0, 200), "S": (0, 2)}, big_sizes={"P": 100_003, "S": 2})


def _reg(b, mask, wd, l1):
    # Outside the decay segments the gradient is used as is (even for a NaN parameter);
    # the L1 subgradient of a NaN parameter is 0 (the parameter itself stays NaN).
    p = b["params"]
    sign = np.where(np.isnan(p), 0.0, np.sign(p))
    reg = (wd * p if wd else 0.0) + (l1 * sign if l1 else 0.0)
    return np.where(mask > 0, b["grads"] + reg, b["grads"])


def _sgd_ref(b, a, mask):
    g = _reg(b, mask, a["weight_decay"], a.get("l1", 0.0))
    mu = a["momentum"]
    b["momentum_buf"][:] = mu * b["momentum_buf"] + g
    b["params"] -= a["lr"] * (g + mu * b["momentum_buf"])  # nesterov


def _adagrad_ref(b, a, mask):
    g = _reg(b, mask, a["weight_decay"], 0.0)
    b["sum_sq"] += g * g
    b["params"] -= a["lr"] / (1 + (a["step"] - 1) * a["lr_decay"]) * g / (np.sqrt(b["sum_sq"]) + a["eps"])


def _rmsprop_ref(b, a, mask):
    g = _reg(b, mask, a["weight_decay"], 0.0)
    al = a["alpha"]
    b["square_avg"][:] = al * b["square_avg"] + (1 - al) * g * g
    b["grad_avg"][:] = al * b["grad_avg"] + (1 - al) * g
    var = np.maximum(b["square_avg"] - b["grad_avg"] ** 2, 0.0)
    b["momentum_buf"][:] = a["momentum"] * b["momentum_buf"] + g / (np.sqrt(var) + a["eps"])
    b["params"] -= a["lr"] * b["momentum_buf"]


def _adadelta_ref(b, a, mask):
    g = _reg(b, mask, a["weight_decay"], 0.0)
    rho, eps = a["rho"], a["eps"]
    b["square_avg"][:] = rho * b["square_avg"] + (1 - rho) * g * g
    delta = np.sqrt(b["acc_delta"] + eps) / np.sqrt(b["square_avg"] + eps) * g
    b["acc_delta"][:] = rho * b["acc_delta"] + (1 - rho) * delta * delta
    b["params"] -= a["lr"] * delta


def _adam_ref(b, a, mask):
    g = _reg(b, mask, 0.0, a["l1"])
    b["params"] = np.where(mask > 0, b["params"] * (1 - a["lr"] * a["weight_decay"]), b["params"])  # AdamW
    b1, b2, t = a["beta1"], a["beta2"], a["step"]
    b["exp_avg"][:] = b1 * b["exp_avg"] + (1 - b1) * g
    b["exp_avg_sq"][:] = b2 * b["exp_avg_sq"] + (1 - b2) * g * g
    b["params"] -= a["lr"] * (b["exp_avg"] / (1 - b1 ** t)) / (np.sqrt(b["exp_avg_sq"] / (1 - b2 ** t)) + a["eps"])


@_quiet
def _rmsprop_tol(a):
    """Centered RMSprop divides by sqrt(sq - ga^2): when the two nearly cancel, the float32
    rounding of the difference (~ eps (sq + ga^2)) moves the step by the whole interval."""
    b = _f64(a, ["params", "grads", "square_avg", "momentum_buf", "grad_avg"])
    _rmsprop_ref(b, a, _decay_mask(a, b["params"].shape[0]))
    sq, ga = b["square_avg"], b["grad_avg"]
    g = np.abs(a["grads"].astype(np.float64)) + np.abs(a["params"].astype(np.float64)) * a["weight_decay"]
    var = np.maximum(sq - ga ** 2, 0.0)
    dv = 16 * EPS32 * (sq + ga ** 2 + g * g)
    lo, hi = np.sqrt(np.maximum(var - dv, 0.0)), np.sqrt(var + dv)
    d_err = g * (1 / (lo + a["eps"]) - 1 / (hi + a["eps"]))
    return {"momentum_buf": d_err, "params": a["lr"] * d_err}


def _optim_specs():
    step_bad = [("step-zero", lambda a: {**a, "step": 0}, ValueError, "step"),
                ("step-float", lambda a: {**a, "step": 1.5}, TypeError, "step"),
                ("step-bool", lambda a: {**a, "step": True}, TypeError, "step"),
                ("step-2**63", lambda a: {**a, "step": 2 ** 63}, ValueError, "step"),
                ("step-2**70", lambda a: {**a, "step": 2 ** 70}, ValueError, "step")]
    return [
        _optim_spec("sgd_step", ["momentum_buf"], dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
                    _sgd_ref, [("momentum-buf-missing", lambda a: {**a, "momentum_buf": None}, ValueError,
                                "momentum_buf")]),
        _optim_spec("adagrad_step", ["sum_sq"], dict(lr=0.1, step=3, lr_decay=0.1, weight_decay=0.01, eps=1e-6),
                    _adagrad_ref, step_bad),
        _optim_spec("rmsprop_step", ["square_avg", "momentum_buf", "grad_avg"],
                    dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.9, centered=True),
                    _rmsprop_ref, [("grad-avg-missing", lambda a: {**a, "grad_avg": None}, ValueError, "grad_avg")],
                    tol_extra=_rmsprop_tol),
        _optim_spec("adadelta_step", ["square_avg", "acc_delta"], dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.01),
                    _adadelta_ref, [("rho-above-1", lambda a: {**a, "rho": 1.5}, ValueError, "rho")]),
        _optim_spec("adam_step", ["exp_avg", "exp_avg_sq"],
                    dict(lr=1e-2, step=3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True, l1=1e-3),
                    _adam_ref, step_bad + [
                        ("beta1-one", lambda a: {**a, "beta1": 1.0}, ValueError, "beta1"),
                        ("beta2-negative", lambda a: {**a, "beta2": -0.1}, ValueError, "beta2"),
                        ("eps-negative", lambda a: {**a, "eps": -1e-8}, ValueError, "eps")]),
        max_norm_spec(),
    ]


def max_norm_spec():
    arrays = {"w": Arr(("K", "M"), role="inplace")}

    def make(rng, s):
        return {"w": normal(rng, (s["K"], s["M"]), 2.0), "max_norm": 3.0}

    @_quiet
    def reference(a):
        w = a["w"].astype(np.float64)
        norm = np.sqrt((w ** 2).sum(axis=0))
        return (None, w * np.where(norm > a["max_norm"], a["max_norm"] / (norm + 1e-7), 1.0))

    def tol(a, exp):
        return (None, 16 * EPS32 * (a["w"].shape[0] + 2) * np.abs(a["w"].astype(np.float64)) + FLOOR)

    extra = [("max-norm-zero", lambda a: {**a, "max_norm": 0.0}, ValueError, "max_norm"),
             ("max-norm-negative", lambda a: {**a, "max_norm": -1.0}, ValueError, "max_norm"),
             ("max-norm-nan", lambda a: {**a, "max_norm": float("nan")}, ValueError, "max_norm"),
             ("max-norm-bool", lambda a: {**a, "max_norm": True}, TypeError, "max_norm"),
             ("max-norm-inf", lambda a: {**a, "max_norm": float("inf")}, ValueError, "max_norm")]
    return Spec("max_norm_", "", arrays, make, reference, tol, sizes={"K": 5, "M": 6},
                free=frozenset({"K", "M"}), extra_bad=tuple(extra),
                fuzz_sizes={"K": (0, 40), "M": (0, 40)}, big_sizes={"K": 400, "M": 300})


# ----------------------------------------------------------------------------- the table
SPECS = [
    dense_forward_spec("prelu"), dense_forward_spec("tanh"),
    dense_backward_spec("prelu"), dense_backward_spec("tanh"),
    matmul_spec(),
    softmax_ce_spec("labels"), softmax_ce_spec("labels32"), softmax_ce_spec("probs"),
    softmax_ce_spec("labels", weighted=True), softmax_ce_spec("probs", weighted=True),
    _elementwise_spec("mse", "pred"), _elementwise_spec("binary_cross_entropy", "logits"),
    _elementwise_spec("mse", "pred", weighted=True), _elementwise_spec("binary_cross_entropy", "logits", weighted=True),
    bn_train_spec(), bn_eval_spec(), bn_backward_spec(),
    maxout_forward_spec(), maxout_backward_spec(), dense_maxout_forward_spec(), dense_maxout_backward_spec(),
    dropout_forward_spec(), dropout_backward_spec(), dense_dropout_forward_spec(), dense_dropout_backward_spec(),
]

# Kernels that land from other branches join the table when fastdl.kernels exports them.
from fastdl import kernels as _K  # noqa: E402

SPECS += [s for s in _optim_specs() if s.kernel in _K._KERNELS]

BY_KERNEL = {}
for _s in SPECS:
    BY_KERNEL.setdefault(_s.kernel, []).append(_s)


def symbols(spec):
    out = []
    for a in spec.arrays.values():
        for d in a.dims:
            for s in (d if isinstance(d, tuple) else (d,)):
                if isinstance(s, str) and s not in out:
                    out.append(s)
    return out


def build(spec, rng, sizes=None):
    return spec.make(rng, {**spec.sizes, **(sizes or {})})


def copy_args(args):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}


def expected(spec, args):
    """The float64 reference, computed from a copy taken before any in-place update."""
    return spec.ref(copy_args(args))


def check_close(spec, got, exp, tol, where=""):
    assert len(got) == len(exp) == len(tol), (spec.id, len(got), len(exp), len(tol))
    for i, (g, e, t) in enumerate(zip(got, exp, tol)):
        if e is None:
            assert g is None, f"{spec.id}{where}: output {i} should be None"
            continue
        g = np.asarray(g, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        assert g.shape == e.shape, f"{spec.id}{where}: output {i} has shape {g.shape}, expected {e.shape}"
        err = np.abs(g - e)
        same_nonfinite = (np.isnan(g) & np.isnan(e)) | (np.isinf(e) & (g == e))
        bad = ~(err <= t) & ~same_nonfinite  # NaN where the reference is finite counts as bad
        if bad.any():
            idx = tuple(np.argwhere(bad)[0]) if g.ndim else ()
            raise AssertionError(f"{spec.id}{where}: output {i} differs at {idx}: got {g[idx]!r}, "
                                 f"expected {e[idx]!r} +- {np.broadcast_to(t, e.shape)[idx]!r} "
                                 f"({int(bad.sum())} of {bad.size} elements)")
