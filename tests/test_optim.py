"""The fused optimizer steps against float64 numpy references and torch.optim."""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

# Sizes off the vector widths (4, 8, 16) and the 8192-element blocks; the last two run
# on several threads (the kernels go parallel from 32768 elements).
SIZES = (1, 7, 17, 33, 1000, 8193, 100_003)


# ---------------------------------------------------------------- float64 references
# Each takes float64 copies of the buffers, updates them in place like the kernel and
# uses `mask` (1.0 where weight decay / L1 apply, else 0.0) for decay_segments.


def _reg(p, g, mask, weight_decay=0.0, l1=0.0):
    return g + mask * (weight_decay * p + l1 * np.sign(p))


def sgd_ref(p, g, buf, mask, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
            nesterov=False, first_step=False, classic=False, l1=0.0):
    g = _reg(p, g, mask, weight_decay, l1)
    if momentum == 0:
        p -= lr * g
    elif not classic:
        buf[:] = g if first_step else momentum * buf + (1 - dampening) * g
        p -= lr * (g + momentum * buf if nesterov else buf)
    else:
        buf[:] = -lr * g if first_step else momentum * buf - lr * (1 - dampening) * g
        p += momentum * buf - lr * g if nesterov else buf


def adagrad_ref(p, g, sum_sq, mask, *, lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10, l1=0.0):
    g = _reg(p, g, mask, weight_decay, l1)
    sum_sq += g * g
    p -= lr / (1 + (step - 1) * lr_decay) * g / (np.sqrt(sum_sq) + eps)


def rmsprop_ref(p, g, sq, mask, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False, momentum_buf=None, grad_avg=None, l1=0.0):
    g = _reg(p, g, mask, weight_decay, l1)
    sq[:] = alpha * sq + (1 - alpha) * g * g
    var = sq
    if centered:
        grad_avg[:] = alpha * grad_avg + (1 - alpha) * g
        var = np.maximum(sq - grad_avg**2, 0.0)
    d = g / (np.sqrt(var) + eps)
    if momentum > 0:
        momentum_buf[:] = momentum * momentum_buf + d
        d = momentum_buf
    p -= lr * d


def adadelta_ref(p, g, sq, acc, mask, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, l1=0.0):
    g = _reg(p, g, mask, weight_decay, l1)
    sq[:] = rho * sq + (1 - rho) * g * g
    delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
    acc[:] = rho * acc + (1 - rho) * delta * delta
    p -= lr * delta


def adam_ref(p, g, m, v, mask, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
             decoupled=False, l1=0.0):
    if decoupled:
        g = _reg(p, g, mask, 0.0, l1)
        p *= 1 - mask * lr * weight_decay
    else:
        g = _reg(p, g, mask, weight_decay, l1)
    m[:] = beta1 * m + (1 - beta1) * g
    v[:] = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)


def max_norm_ref(w, max_norm):
    norm = np.sqrt((w.astype(np.float64) ** 2).sum(axis=0))
    scale = np.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0)
    return w * scale


# ---------------------------------------------------------------- cases
# (name, state buffer names, kernel kwargs, reference). Every variant of each optimizer.

CASES = [
    ("sgd", ["momentum_buf"], dict(lr=0.1), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.9), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.9, first_step=True), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.9, classic=True, l1=0.01), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.9, classic=True, nesterov=True), sgd_ref),
    ("sgd", ["momentum_buf"], dict(lr=0.1, momentum=0.8, classic=True, first_step=True, dampening=0.5), sgd_ref),
    ("adagrad", ["sum_sq"], dict(lr=0.1, step=3), adagrad_ref),
    ("adagrad", ["sum_sq"], dict(lr=0.1, step=5, lr_decay=0.1, weight_decay=0.01, eps=1e-6, l1=1e-3), adagrad_ref),
    ("rmsprop", ["square_avg"], dict(lr=0.01), rmsprop_ref),
    ("rmsprop", ["square_avg", "momentum_buf"], dict(lr=0.01, momentum=0.9, weight_decay=0.01), rmsprop_ref),
    ("rmsprop", ["square_avg", "grad_avg"], dict(lr=0.01, centered=True, alpha=0.9), rmsprop_ref),
    ("rmsprop", ["square_avg", "momentum_buf", "grad_avg"],
     dict(lr=0.01, momentum=0.5, centered=True, l1=1e-3), rmsprop_ref),
    ("adadelta", ["square_avg", "acc_delta"], dict(), adadelta_ref),
    ("adadelta", ["square_avg", "acc_delta"], dict(lr=0.5, rho=0.95, eps=1e-5, weight_decay=0.01, l1=1e-3),
     adadelta_ref),
    ("adam", ["exp_avg", "exp_avg_sq"], dict(lr=1e-3, step=1), adam_ref),
    ("adam", ["exp_avg", "exp_avg_sq"], dict(lr=1e-2, step=7, weight_decay=0.1), adam_ref),
    ("adam", ["exp_avg", "exp_avg_sq"], dict(lr=1e-2, step=12, weight_decay=0.1, decoupled=True), adam_ref),
    ("adam", ["exp_avg", "exp_avg_sq"], dict(lr=1e-2, step=2, beta1=0.5, beta2=0.9, eps=1e-6, l1=1e-2,
                                            decoupled=True, weight_decay=0.05), adam_ref),
]


def _case_id(case):
    name, _, kw, _ = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def _kernel(name):
    return getattr(K, f"{name}_step")


def _positional(name):
    """The state buffers each kernel takes positionally (the others are keywords)."""
    return {"sgd": ["momentum_buf"], "adagrad": ["sum_sq"], "rmsprop": ["square_avg"],
            "adadelta": ["square_avg", "acc_delta"], "adam": ["exp_avg", "exp_avg_sq"]}[name]


def make_state(rng, name, buffers, n):
    """Plausible, non-trivial state: positive where the optimizer keeps squares."""
    state = {}
    for b in buffers:
        if b in ("sum_sq", "square_avg", "exp_avg_sq", "acc_delta"):
            state[b] = rng.uniform(0.01, 1.0, n).astype(np.float32)
        elif b == "grad_avg":  # |grad_avg|^2 below square_avg keeps the variance positive
            state[b] = (0.05 * rng.standard_normal(n)).astype(np.float32)
        else:
            state[b] = rng.standard_normal(n).astype(np.float32)
    return state


def run_kernel(name, p, g, state, kw, segments=None):
    pos = [state.get(b) for b in _positional(name)]
    extra = {b: state[b] for b in state if b not in _positional(name)}
    _kernel(name)(p, g, *pos, decay_segments=segments, **kw, **extra)


def run_reference(ref, name, p, g, state, kw, mask):
    p64 = p.astype(np.float64)
    s64 = {b: a.astype(np.float64) for b, a in state.items()}
    pos = [s64.get(b) for b in _positional(name)]
    extra = {b: s64[b] for b in s64 if b not in _positional(name)}
    ref(p64, g.astype(np.float64), *pos, mask, **kw, **extra)
    return p64, s64


def assert_close_to_reference(p, state, p64, s64, what):
    # float32 elementwise math: a few ulps of each term; where terms cancel (mu*buf + d)
    # the error is relative to the terms, hence the absolute part scaled by the buffer.
    np.testing.assert_allclose(p, p64, rtol=2e-6, atol=1e-6 * max(1.0, np.abs(p64).max()), err_msg=what)
    for b in state:
        np.testing.assert_allclose(state[b], s64[b], rtol=2e-6, atol=1e-6 * max(1.0, np.abs(s64[b]).max()),
                                   err_msg=f"{what}: {b}")


def mask_of(n, segments):
    if segments is None:
        return np.ones(n)
    mask = np.zeros(n)
    for a, b in segments:
        mask[a:b] = 1.0
    return mask


# ---------------------------------------------------------------- against the references


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_step_matches_float64_reference(isa, rng, case, n):
    name, buffers, kw, ref = case
    p = rng.standard_normal(n).astype(np.float32)
    state = make_state(rng, name, buffers, n)
    base = dict(kw)
    for step in range(3):  # the reference restarts from the kernel's state each step
        g = rng.standard_normal(n).astype(np.float32)
        if "step" in base:
            kw = {**kw, "step": base["step"] + step}
        p64, s64 = run_reference(ref, name, p, g, state, kw, np.ones(n))
        run_kernel(name, p, g, state, kw)
        assert_close_to_reference(p, state, p64, s64, f"{name} step {step}")
        kw = {k: v for k, v in kw.items() if k != "first_step"}


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_decay_segments_restrict_decay_and_l1(isa, rng, case):
    name, buffers, kw, ref = case
    n = 20_000
    kw = {**kw, "weight_decay": 0.05, "l1": 0.01}
    kw.pop("first_step", None)
    # unsorted, overlapping, touching, empty and block-straddling ranges
    segments = np.array([[8190, 8200], [0, 5], [12_000, 19_999], [8195, 9000], [9000, 9001], [300, 300],
                         [100, 117]], dtype=np.int64)
    mask = mask_of(n, segments)
    p = rng.standard_normal(n).astype(np.float32)
    state = make_state(rng, name, buffers, n)
    g = rng.standard_normal(n).astype(np.float32)
    p64, s64 = run_reference(ref, name, p, g, state, kw, mask)
    p_plain, s_plain = run_reference(ref, name, p, g, state, {**kw, "weight_decay": 0.0, "l1": 0.0}, mask)
    assert not np.allclose(p64[mask == 1], p_plain[mask == 1], rtol=1e-4)  # decay matters here
    run_kernel(name, p, g, state, kw, segments)
    assert_close_to_reference(p, state, p64, s64, f"{name} with decay_segments")
    # outside the segments the step is exactly the undecayed one
    np.testing.assert_allclose(p[mask == 0], p_plain[mask == 0], rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("offsets", [(0, 0, 0, 0), (1, 1, 1, 1), (3, 0, 7, 13), (15, 2, 9, 4)])
def test_buffers_at_any_alignment(isa, rng, offsets):
    """Contiguous views starting mid-vector (the kernel peels to the params' alignment)."""
    n = 1003
    bases = [np.zeros(n + 16, np.float32) for _ in offsets]
    p, g, m, v = (b[o:o + n] for b, o in zip(bases, offsets))
    p[:], g[:], m[:], v[:] = (rng.standard_normal(n).astype(np.float32) for _ in range(4))
    v[:] = np.abs(v)
    state = {"exp_avg": m, "exp_avg_sq": v}
    kw = dict(lr=0.01, step=3, weight_decay=0.1, decoupled=True, l1=0.01)
    segments = np.array([[5, 600], [700, 1001]], np.int64)
    p64, s64 = run_reference(adam_ref, "adam", p, g, state, kw, mask_of(n, segments))
    run_kernel("adam", p, g, state, kw, segments)
    assert_close_to_reference(p, state, p64, s64, f"adam at offsets {offsets}")
    for b, o in zip(bases, offsets):  # nothing written outside the views
        assert not b[:o].any() and not b[o + n:].any()


def test_empty_decay_segments_mean_no_decay(rng):
    n = 100
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    p1, p2 = p.copy(), p.copy()
    K.sgd_step(p1, g, None, lr=0.1, weight_decay=0.5, l1=0.1, decay_segments=np.empty((0, 2), np.int64))
    K.sgd_step(p2, g, None, lr=0.1)
    np.testing.assert_array_equal(p1, p2)


def test_zero_length_buffers_are_a_no_op():
    e = np.empty(0, np.float32)
    K.adam_step(e, e.copy(), e.copy(), e.copy(), lr=1e-3, step=1, decay_segments=np.array([[0, 0]], np.int64))
    K.max_norm_(np.empty((0, 3), np.float32), 1.0)


def test_results_do_not_depend_on_thread_count(rng):
    n = 300_001
    before = fastdl.get_num_threads()
    segments = np.array([[0, 100_000], [150_001, 300_001]], np.int64)
    results = []
    try:
        for t in (1, 2, 3):
            fastdl.set_num_threads(t)
            p = np.linspace(-1, 1, n, dtype=np.float32)
            g = np.cos(np.arange(n, dtype=np.float32))
            m, v = np.zeros(n, np.float32), np.ones(n, np.float32)
            K.adam_step(p, g, m, v, lr=1e-2, step=3, weight_decay=0.1, decoupled=True, l1=1e-3,
                        decay_segments=segments)
            results.append((p, m, v))
    finally:
        fastdl.set_num_threads(before)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)


def test_isa_paths_agree(rng):
    n = 1001
    p0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    previous = fastdl.get_isa()
    out = {}
    try:
        for name in ("avx512", "avx2", "generic"):
            if fastdl.cpu_supports(name):
                fastdl.set_isa(name)
                p, sq, mb, ga = p0.copy(), np.full(n, 0.5, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
                K.rmsprop_step(p, g, sq, lr=0.01, momentum=0.9, centered=True, momentum_buf=mb, grad_avg=ga)
                out[name] = p
    finally:
        fastdl.set_isa(previous)
    for p in out.values():
        np.testing.assert_allclose(p, out["generic"], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- max_norm_


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (7, 17), (100, 33), (17, 1000), (300, 130)])
def test_max_norm_matches_reference(isa, rng, shape):
    # |w| in [0.5, 1.5]: every column's norm is above max_norm, except every third one,
    # shrunk inside the ball (those must be left bit-for-bit alone)
    w = (rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)
    w[:, ::3] *= 0.01
    max_norm = 0.3 * np.sqrt(shape[0])
    before = w.copy()
    expected = max_norm_ref(w, max_norm)
    K.max_norm_(w, max_norm)
    np.testing.assert_allclose(w, expected, rtol=2e-6, atol=1e-7)
    norms = np.sqrt((before.astype(np.float64) ** 2).sum(axis=0))
    inside = norms <= max_norm
    assert inside.any() and ((~inside).any() or shape[1] == 1)
    np.testing.assert_array_equal(w[:, inside], before[:, inside])
    assert np.all(np.sqrt((w.astype(np.float64) ** 2).sum(axis=0)) <= max_norm * (1 + 1e-6))


def test_max_norm_matches_torch_renorm(rng):
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((64, 50)).astype(np.float32)
    expected = torch.renorm(torch.from_numpy(w.copy()), 2, 1, 3.0).numpy()
    K.max_norm_(w, 3.0)
    np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- parity with torch.optim

TORCH_CASES = [
    # (torch optimizer, its kwargs, fastdl name, fastdl kwargs, state buffers, initial state)
    ("SGD", dict(lr=0.05), "sgd", dict(lr=0.05), [], {}),
    ("SGD", dict(lr=0.05, momentum=0.9), "sgd", dict(lr=0.05, momentum=0.9), ["momentum_buf"], {}),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01), "sgd",
     dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01), ["momentum_buf"], {}),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), "sgd",
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), ["momentum_buf"], {}),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), "sgd",  # the lectures' form, constant lr
     dict(lr=0.05, momentum=0.9, nesterov=True, classic=True), ["momentum_buf"], {}),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3), "sgd",
     dict(lr=0.05, momentum=0.9, dampening=0.3, classic=True), ["momentum_buf"], {}),
    ("Adagrad", dict(lr=0.05), "adagrad", dict(lr=0.05), ["sum_sq"], {}),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-8),
     "adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01, eps=1e-8), ["sum_sq"], {"sum_sq": 0.1}),
    ("RMSprop", dict(lr=0.01), "rmsprop", dict(lr=0.01), ["square_avg"], {}),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01), "rmsprop",
     dict(lr=0.01, momentum=0.9, weight_decay=0.01), ["square_avg", "momentum_buf"], {}),
    ("RMSprop", dict(lr=0.01, centered=True, alpha=0.9), "rmsprop", dict(lr=0.01, centered=True, alpha=0.9),
     ["square_avg", "grad_avg"], {}),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, eps=1e-6), "rmsprop",
     dict(lr=0.01, momentum=0.5, centered=True, eps=1e-6), ["square_avg", "momentum_buf", "grad_avg"], {}),
    ("Adadelta", dict(), "adadelta", dict(), ["square_avg", "acc_delta"], {}),
    ("Adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.01), "adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.01),
     ["square_avg", "acc_delta"], {}),
    ("Adam", dict(lr=1e-2), "adam", dict(lr=1e-2), ["exp_avg", "exp_avg_sq"], {}),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01), "adam",
     dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01), ["exp_avg", "exp_avg_sq"], {}),
    ("AdamW", dict(lr=1e-2), "adam", dict(lr=1e-2, weight_decay=1e-2, decoupled=True),
     ["exp_avg", "exp_avg_sq"], {}),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1), "adam", dict(lr=1e-2, weight_decay=0.1, decoupled=True),
     ["exp_avg", "exp_avg_sq"], {}),
]


class Problem:
    """Noisy least squares: grad = A^T (A p - y) / N + noise_t, the same for both sides."""

    def __init__(self, rng, n, steps):
        self.a = (rng.standard_normal((2 * n, n)) / np.sqrt(2 * n)).astype(np.float32)
        self.y = rng.standard_normal(2 * n).astype(np.float32)
        self.noise = (0.1 * rng.standard_normal((steps, n))).astype(np.float32)
        self.p0 = rng.standard_normal(n).astype(np.float32)

    def grad(self, p, t):
        return (self.a.T @ (self.a @ p - self.y)) / np.float32(len(self.y)) + self.noise[t]


def _torch_case_id(case):
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", TORCH_CASES, ids=_torch_case_id)
def test_parity_with_torch_optim_over_100_steps(isa, case):
    torch = pytest.importorskip("torch")
    topt_name, tkw, name, kw, buffers, init = case
    steps, n = 100, 301
    prob = Problem(np.random.default_rng(7), n, steps)
    tp = torch.nn.Parameter(torch.from_numpy(prob.p0.copy()))
    topt = getattr(torch.optim, topt_name)([tp], foreach=False, **tkw)
    p = prob.p0.copy()
    state = {b: np.full(n, init.get(b, 0.0), np.float32) for b in buffers}
    for t in range(steps):
        tp.grad = torch.from_numpy(prob.grad(tp.detach().numpy(), t))
        topt.step()
        g = prob.grad(p, t)
        extra = {"step": t + 1} if name in ("adam", "adagrad") else {}
        if name == "sgd" and "momentum" in kw:
            extra["first_step"] = t == 0
        run_kernel(name, p, g, state, {**kw, **extra})
    expected = tp.detach().numpy()
    assert not np.allclose(expected, prob.p0, atol=1e-2)  # the optimizer moved
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("topt_name", ["SGD", "Adam", "AdamW"])
def test_decay_segments_match_torch_param_groups(topt_name):
    """Weights [0, 200) and [250, 301) decayed, 'biases' [200, 250) not: torch's two groups."""
    torch = pytest.importorskip("torch")
    steps, n = 100, 301
    prob = Problem(np.random.default_rng(11), n, steps)
    segments = np.array([[0, 200], [250, 301]], np.int64)
    mask = mask_of(n, segments).astype(bool)
    wd = 0.1
    full = torch.from_numpy(prob.p0.copy())
    decayed = torch.nn.Parameter(full[torch.from_numpy(mask)].clone())
    plain = torch.nn.Parameter(full[torch.from_numpy(~mask)].clone())
    tkw = dict(lr=0.02, momentum=0.9) if topt_name == "SGD" else dict(lr=1e-2)
    topt = getattr(torch.optim, topt_name)(
        [{"params": [decayed], "weight_decay": wd}, {"params": [plain], "weight_decay": 0.0}], foreach=False, **tkw)
    name = "sgd" if topt_name == "SGD" else "adam"
    kw = dict(tkw, weight_decay=wd, decoupled=topt_name == "AdamW") if name == "adam" else dict(tkw, weight_decay=wd)
    buffers = ["momentum_buf"] if name == "sgd" else ["exp_avg", "exp_avg_sq"]
    state = {b: np.zeros(n, np.float32) for b in buffers}
    p = prob.p0.copy()
    tfull = np.empty(n, np.float32)
    for t in range(steps):
        tfull[mask], tfull[~mask] = decayed.detach().numpy(), plain.detach().numpy()
        g = prob.grad(tfull, t)
        decayed.grad, plain.grad = torch.from_numpy(g[mask].copy()), torch.from_numpy(g[~mask].copy())
        topt.step()
        extra = {"step": t + 1} if name == "adam" else {"first_step": t == 0}
        run_kernel(name, p, prob.grad(p, t), state, {**kw, **extra}, segments)
    tfull[mask], tfull[~mask] = decayed.detach().numpy(), plain.detach().numpy()
    np.testing.assert_allclose(p, tfull, rtol=1e-6, atol=1e-6 * np.abs(tfull).max())


# ---------------------------------------------------------------- bad input


@pytest.fixture
def adam_buffers(rng):
    n = 10
    return [rng.standard_normal(n).astype(np.float32) for _ in range(4)]


def test_float64_or_strided_params_are_refused_not_copied(adam_buffers):
    p, g, m, v = adam_buffers
    p64 = p.astype(np.float64)
    before = p64.copy()
    with pytest.raises(TypeError, match=r"params: expected dtype float32, got float64"):
        K.adam_step(p64, g, m, v, lr=0.1, step=1)
    np.testing.assert_array_equal(p64, before)
    wide = np.repeat(p, 2)
    before = wide.copy()
    with pytest.raises(ValueError, match=r"params: expected a C-contiguous array"):
        K.adam_step(wide[::2], g, m, v, lr=0.1, step=1)
    np.testing.assert_array_equal(wide, before)
    with pytest.raises(ValueError, match=r"exp_avg_sq: expected a C-contiguous array"):
        K.adam_step(p, g, m, np.repeat(v, 2)[::2], lr=0.1, step=1)
    with pytest.raises(TypeError, match=r"momentum_buf: expected dtype float32, got float16"):
        K.sgd_step(p, g, m.astype(np.float16), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match=r"grads: expected a numpy.ndarray of float32"):
        K.sgd_step(p, g.tolist(), None, lr=0.1)


def test_read_only_and_wrong_length_buffers(adam_buffers):
    p, g, m, v = adam_buffers
    ro = m.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"exp_avg: the array is read-only"):
        K.adam_step(p, g, ro, v, lr=0.1, step=1)
    ro_p = p.copy()
    ro_p.flags.writeable = False
    with pytest.raises(ValueError, match=r"params: the array is read-only"):
        K.sgd_step(ro_p, g, None, lr=0.1)
    g_ro = g.copy()
    g_ro.flags.writeable = False
    K.sgd_step(p.copy(), g_ro, None, lr=0.1)  # grads are only read
    with pytest.raises(ValueError, match=r"grads: expected shape\[0\] == 10 \(the length of params\)"):
        K.adam_step(p, g[:9], m, v, lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sq: expected shape\[0\] == 10"):
        K.adam_step(p, g, m, np.zeros(11, np.float32), lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"params: expected a 1-D array"):
        K.adam_step(p.reshape(2, 5), g, m, v, lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sq: shares memory with 'exp_avg'"):
        K.adam_step(p, g, m, m, lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"grads: shares memory with 'params'"):
        K.sgd_step(p, p, None, lr=0.1)
    with pytest.raises(TypeError, match=r"sum_sq: expected a float32 buffer of length 10, got None"):
        K.adagrad_step(p, g, None, lr=0.1, step=1)


def test_bad_hyperparameters_name_the_argument(adam_buffers):
    p, g, m, v = adam_buffers
    for lr in (0.0, -1e-3, float("nan"), float("inf"), 1e300):
        with pytest.raises(ValueError, match=r"^lr: (expected a finite number|1e\+300 is beyond float32)"):
            K.adam_step(p, g, m, v, lr=lr, step=1)
        with pytest.raises(ValueError, match=r"^lr: (expected a finite number|1e\+300 is beyond float32)"):
            K.sgd_step(p, g, None, lr=lr)
    with pytest.raises(ValueError, match=r"lr: expected a finite number > 0, got 0"):
        K.adadelta_step(p, g, m, v, lr=0.0)
    with pytest.raises(ValueError, match=r"^step: expected an integer in \[1, 9223372036854775807\], got 0"):
        K.adam_step(p, g, m, v, lr=0.1, step=0)
    with pytest.raises(ValueError, match=r"step: .* got -3"):
        K.adagrad_step(p, g, m, lr=0.1, step=-3)
    with pytest.raises(ValueError, match=r"nesterov: needs momentum > 0 and dampening = 0"):
        K.sgd_step(p, g, m, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"nesterov: needs momentum > 0 and dampening = 0"):
        K.sgd_step(p, g, m, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"momentum_buf: momentum=0.9 needs a float32 buffer"):
        K.sgd_step(p, g, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum: expected a finite number >= 0, got -0.5"):
        K.sgd_step(p, g, m, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match=r"grad_avg: centered=True needs"):
        K.rmsprop_step(p, g, m, lr=0.1, centered=True)
    with pytest.raises(ValueError, match=r"momentum_buf: momentum=0.9 needs"):
        K.rmsprop_step(p, g, m, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"beta1: expected a number in \[0, 1\), got 1"):
        K.adam_step(p, g, m, v, lr=0.1, step=1, beta1=1.0)
    with pytest.raises(ValueError, match=r"beta2: expected a number in \[0, 1\)"):
        K.adam_step(p, g, m, v, lr=0.1, step=1, beta2=-0.1)
    with pytest.raises(ValueError, match=r"weight_decay: expected a finite number >= 0"):
        K.adam_step(p, g, m, v, lr=0.1, step=1, weight_decay=-1.0)
    with pytest.raises(ValueError, match=r"l1: expected a finite number >= 0"):
        K.sgd_step(p, g, None, lr=0.1, l1=-1.0)
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0"):
        K.adagrad_step(p, g, m, lr=0.1, step=1, eps=-1.0)
    with pytest.raises(ValueError, match=r"rho: expected a number in \[0, 1\]"):
        K.adadelta_step(p, g, m, v, rho=1.5)
    with pytest.raises(ValueError, match=r"alpha: expected a finite number >= 0"):
        K.rmsprop_step(p, g, m, lr=0.1, alpha=-0.1)
    with pytest.raises(ValueError, match=r"lr_decay: expected a finite number >= 0"):
        K.adagrad_step(p, g, m, lr=0.1, step=1, lr_decay=-0.1)


def test_bad_decay_segments(adam_buffers):
    p, g, m, v = adam_buffers
    before = [a.copy() for a in adam_buffers]
    for seg, pattern in [
        ([[0, 11]], r"decay_segments: row 0 is \[0, 11\); expected 0 <= start <= stop <= 10"),
        ([[0, 5], [-1, 3]], r"decay_segments: row 1 is \[-1, 3\)"),
        ([[6, 5]], r"decay_segments: row 0 is \[6, 5\)"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            K.adam_step(p, g, m, v, lr=0.1, step=1, weight_decay=0.1, decay_segments=np.array(seg, np.int64))
    for a, b in zip(adam_buffers, before):  # nothing was written before the error
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"decay_segments: expected dtype int64, got int32"):
        K.adam_step(p, g, m, v, lr=0.1, step=1, decay_segments=np.array([[0, 5]], np.int32))
    with pytest.raises(ValueError, match=r"decay_segments: expected shape\[1\] == 2"):
        K.adam_step(p, g, m, v, lr=0.1, step=1, decay_segments=np.array([[0, 5, 7]], np.int64))
    with pytest.raises(ValueError, match=r"decay_segments: expected a 2-D array"):
        K.adam_step(p, g, m, v, lr=0.1, step=1, decay_segments=np.array([0, 5], np.int64))


def test_bad_max_norm_arguments(rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^max_norm: expected a finite number"):
            K.max_norm_(w, bad)
    with pytest.raises(ValueError, match=r"w: expected a 2-D array"):
        K.max_norm_(w.ravel(), 1.0)
    with pytest.raises(TypeError, match=r"w: expected dtype float32, got float64"):
        K.max_norm_(w.astype(np.float64), 1.0)
    with pytest.raises(ValueError, match=r"w: expected a C-contiguous array"):
        K.max_norm_(np.asfortranarray(w), 1.0)
    w.flags.writeable = False
    with pytest.raises(ValueError, match=r"w: the array is read-only"):
        K.max_norm_(w, 1.0)


def test_subnormal_state_is_flushed_and_the_callers_fp_environment_kept():
    # Where a gradient stays 0, Adam's exp_avg decays into the subnormal range, where
    # every operation is a slow microcode assist (184 us instead of 17 for 59k
    # parameters here): the optimizer steps flush subnormals to zero (FTZ/DAZ inside
    # their threads only).
    n = 50_000  # above the one-thread cut-off: both OpenMP threads flush
    p = np.ones(n, np.float32)
    g = np.zeros(n, np.float32)
    m = np.full(n, 1e-39, np.float32)
    v = np.full(n, 1e-6, np.float32)
    K.adam_step(p, g, m, v, lr=1e-3, step=10)
    assert not m.any()  # 0.9 * 1e-39 flushed
    np.testing.assert_array_equal(p, 1.0)
    # the calling thread still computes subnormals (its MXCSR was restored)
    tiny = np.array([1e-39], np.float32)
    assert (tiny * np.float32(0.5))[0] == np.float32(5e-40)
    # normal values are untouched by the flush: same result as an unflushed reference
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m = rng.standard_normal(n).astype(np.float32) * 1e-3
    v = np.abs(rng.standard_normal(n)).astype(np.float32) * 1e-3
    p64, m64, v64 = p.astype(np.float64), m * 0.9 + 0.1 * g.astype(np.float64), v * 0.999 + 0.001 * g.astype(np.float64) ** 2
    ref = p64 - 1e-3 / (1 - 0.9 ** 3) * m64 / (np.sqrt(v64 / (1 - 0.999 ** 3)) + 1e-8)
    K.adam_step(p, g, m, v, lr=1e-3, step=3)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)
