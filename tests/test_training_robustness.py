"""What the trainer guarantees under pressure: a step is all or nothing under Ctrl-C, a
BatchNorm network never fails on a one-sample last batch, buffers stay bounded whatever
the batch sizes, per-step schedules start at schedule(0), and inputs are converted or
refused with the argument's name."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, callbacks as C, schedules


def data(n=64, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, c, n)


def _run(code, timeout=240):
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


# -- Ctrl-C -------------------------------------------------------------------------------
INTERRUPTS = """
import os, signal, threading, time
import numpy as np
import fastdl
from fastdl import Dense, Dropout, callbacks as C

rng = np.random.default_rng(0)
x = rng.standard_normal((512, 64)).astype(np.float32)
y = rng.integers(0, 10, 512)

def build(plan):
    m = fastdl.Sequential([Dense(64, 256, activation="relu"), Dropout(0.2), Dense(256, 256, activation="tanh"),
                           Dense(256, 10)], seed=1)
    m.compile(optimizer="adam", loss="softmax_cross_entropy", optimizer_step=plan)
    return m

class StopAfter(C.Callback):
    def __init__(self, n):
        self.n = n
    def on_train_batch_end(self, batch, logs=None):
        if self.model.global_step == self.n:
            self.model.stop_training = True

delays = np.random.default_rng(1).uniform(0.02, 0.25, 8)
for plan in ("in_backward", "separate"):
    for delay in delays:
        m = build(plan)
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            m.fit(x, y, epochs=1000, batch_size=32, verbose=0)
            raise SystemExit("fit ended without the interrupt")
        except KeyboardInterrupt:
            pass
        timer.join()
        steps = m.global_step
        assert m.optimizer.step_count == steps, (plan, steps, m.optimizer.step_count)
        ref = build(plan)
        if steps:
            ref.fit(x, y, epochs=1000, batch_size=32, verbose=0, callbacks=[StopAfter(steps)])
        assert ref.global_step == steps
        assert np.array_equal(ref.flat_params, m.flat_params), (plan, steps)
        print(plan, steps)
# Outside fit, a train_step with the update inside the backward is whole too.
m = build("in_backward")
xb, yb = x[:32], y[:32]
count = 0
def interrupt_soon():
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(0.05, interrupt_soon).start()
try:
    while True:
        m.train_step(xb, yb)
except KeyboardInterrupt:
    pass
assert m.optimizer.step_count == m.global_step
print("ok")
"""


def test_ctrl_c_during_fit_leaves_whole_steps_and_agreeing_counters():
    out = _run(INTERRUPTS)
    assert out.strip().endswith("ok")
    assert out.count("in_backward") == 8 and out.count("separate") == 8


# -- BatchNorm and a one-sample last batch ---------------------------------------------------
def _bn_model():
    m = fastdl.Sequential([Dense(8, 6, activation="relu"), BatchNorm(6), Dense(6, 3)], seed=0)
    m.compile(optimizer="adam", loss="softmax_cross_entropy")
    return m


def test_a_one_sample_last_batch_joins_the_batch_before_it():
    x, y = data(n=33)
    m = _bn_model()
    h = m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert m.optimizer.step_count == 4 and np.isfinite(h.history["loss"]).all()
    # the same as training on the batches 16 and 17 by hand
    ref = _bn_model()
    h2 = ref.fit([(x[:16], y[:16]), (x[16:], y[16:])], epochs=1, verbose=0)
    m2 = _bn_model()
    m2.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_array_equal(ref.flat_params, m2.flat_params)
    assert np.isfinite(h2.history["loss"][0])
    # iterables: a one-row batch is merged into the one before it as well
    it = _bn_model()
    it.fit([(x[:16], y[:16]), (x[16:32], y[16:32]), (x[32:], y[32:])], epochs=1, verbose=0)
    assert it.optimizer.step_count == 2
    # networks without BatchNorm keep the short batch as it is
    plain = fastdl.Sequential([Dense(8, 3)], seed=0)
    plain.compile(optimizer="adam")
    plain.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert plain.optimizer.step_count == 3


def test_one_sample_with_batchnorm_is_refused_before_training():
    x, y = data(n=1)
    m = _bn_model()
    before = m.flat_params.copy()
    with pytest.raises(ValueError, match="one sample cannot train a network with BatchNorm"):
        m.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(m.flat_params, before)


# -- bounded buffers -----------------------------------------------------------------------
def test_many_batch_sizes_keep_buffers_for_a_few_only():
    x, y = data(n=400)
    for layers in ([Dense(8, 32, activation="relu"), Dense(32, 3)],                  # DenseStack
                   [Dense(8, 32, activation="relu"), Dropout(0.3), Dense(32, 3)]):   # stage by stage
        m = fastdl.Sequential(layers, seed=0)
        m.compile(optimizer="adam")
        for n in range(2, 200):
            m.train_step(x[:n], y[:n])
            m.predict(x[:n + 1], batch_size=n + 1)
        limit = fastdl.network.MAX_KEPT_BATCH_SIZES
        for stage in m._graph.stages:
            assert len({stage._rows_of[k] for k in stage._kept_buffers}) <= limit
        assert len(m._stepper._loss_grads) <= limit
        assert m._stepper._stacks is None or len(m._stepper._stacks) <= limit
        # and the buffers that are left still train right
        a = fastdl.Sequential(layers, seed=0)
        a.compile(optimizer="adam")
        a.set_weights(m.get_weights())
        a.optimizer.load_state_dict(m.optimizer.state_dict())
        a._step = m.global_step
        assert a.train_step(x[:5], y[:5]) == m.train_step(x[:5], y[:5])
        np.testing.assert_array_equal(a.flat_params, m.flat_params)


# -- schedules -------------------------------------------------------------------------------
def test_a_per_step_schedule_sets_its_first_value_before_the_first_step():
    x, y = data(n=40)
    m = fastdl.Sequential([Dense(8, 3)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD(lr=0.1))
    used = []
    record = C.LambdaCallback(on_train_batch_begin=lambda b, logs: used.append(m.optimizer.lr))
    sched = C.LearningRateScheduler(schedules.ExponentialDecay(0.9, initial_lr=0.5), per="step")
    m.fit(x, y, epochs=1, batch_size=10, verbose=0, callbacks=[record, sched])
    assert used == pytest.approx([0.5, 0.45, 0.405, 0.3645])
    # a resumed run goes on from the model's step count
    used.clear()
    m.fit(x, y, epochs=1, batch_size=10, verbose=0, callbacks=[sched, record])
    assert used == pytest.approx([0.5 * 0.9 ** t for t in range(4, 8)])


# -- inputs --------------------------------------------------------------------------------
def test_train_step_and_evaluate_take_what_fit_takes():
    x, y = data(n=20)
    a, b = (fastdl.Sequential([Dense(8, 3)], seed=0) for _ in range(2))
    for m in (a, b):
        m.compile(optimizer="sgd", metrics=["accuracy"])
    assert a.train_step(x.tolist(), y.tolist()) == b.train_step(x, y)
    assert a.train_step(x.astype(np.float64), y.astype(np.int32)) == b.train_step(x, y)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert a.evaluate(x.tolist(), y.tolist()) == b.evaluate(x, y)
    assert a.compute_gradients(x.tolist(), y) == b.compute_gradients(x, y)


def test_fit_arguments_of_the_wrong_type_are_named():
    x, y = data(n=20)
    m = fastdl.Sequential([Dense(8, 3)], seed=0)
    m.compile(optimizer="sgd")
    with pytest.raises(TypeError, match="validation_split: expected a fraction"):
        m.fit(x, y, validation_split="0.1", verbose=0)
    with pytest.raises(TypeError, match="x: expected real numbers, got complex"):
        m.fit(x.astype(np.complex64), y, verbose=0)
    with pytest.raises(TypeError, match="x: expected real numbers, got complex"):
        m.predict(x + 1j)
    with pytest.raises(ValueError, match="on_nonfinite_loss"):
        m.fit(x, y, on_nonfinite_loss="ignore", verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        m.fit(x, y, steps_per_epoch=0, verbose=0)
    with pytest.raises(TypeError, match="callbacks"):
        m.fit(x, y, callbacks=C.History(), verbose=0)
