"""compile(optimizer_step="in_backward"): the optimizer applied to the weight matrices
inside their backward kernels must train exactly like the separate step, in train_step
and in fit, for every layer kind and optimizer; "auto" picks it for large weight
matrices past the cache."""

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, Maxout, Sequential
from fastdl.callbacks import GradientMonitor


def _mixed(seed=0):
    # Every stage kind, prelu slopes and batch-norm parameters beside the weights, a
    # layer without bias and max-norm after the update.
    return Sequential([
        Dropout(0.2),
        Dense(20, 33, activation="prelu"), Dropout(0.5),
        Maxout(33, 16, pieces=3),
        BatchNorm(16),
        Dense(16, 12, activation="gelu", use_bias=False, max_norm=1.5),
        Dense(12, 5),
    ], seed=seed)


OPTIMIZERS = {
    "adam": lambda: fastdl.optim.Adam(1e-2, weight_decay=1e-3),
    "adamw": lambda: fastdl.optim.AdamW(1e-2),
    "sgd": lambda: fastdl.optim.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "rmsprop": lambda: fastdl.optim.RMSProp(1e-3, momentum=0.5, centered=True),
    "adagrad": lambda: fastdl.optim.Adagrad(0.05, l1=1e-4),
    "adadelta": lambda: fastdl.optim.Adadelta(),
}


def _pair(build, optimizer, loss="softmax_cross_entropy"):
    models = []
    for mode in ("separate", "in_backward"):
        m = build()
        m.compile(optimizer=OPTIMIZERS[optimizer](), loss=loss, metrics=["accuracy"], optimizer_step=mode)
        models.append(m)
    return models


def _assert_same_training_state(a, b):
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    for name in a.optimizer.state:
        np.testing.assert_array_equal(a.optimizer.state[name], b.optimizer.state[name], err_msg=name)
    assert a.optimizer.step_count == b.optimizer.step_count
    for sa, sb in zip(a._graph.bn_stages, b._graph.bn_stages):
        np.testing.assert_array_equal(sa.running_mean, sb.running_mean)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("batch", [2, 7, 600])  # 600: the dw GEMMs reduce K in blocks
def test_train_step_matches_the_separate_step_bit_for_bit(isa, optimizer, batch):
    rng = np.random.default_rng(batch)
    separate, inside = _pair(_mixed, optimizer)
    assert separate.step_plan.optimizer_step != "in_backward" and inside.step_plan.optimizer_step == "in_backward"
    for _ in range(4):
        x = rng.standard_normal((batch, 20)).astype(np.float32)
        y = rng.integers(0, 5, batch)
        assert separate.train_step(x, y) == inside.train_step(x, y)
        _assert_same_training_state(separate, inside)


def test_fit_matches_the_separate_step_and_a_gradient_reader_gets_gradients():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    separate, inside = _pair(_mixed, "adam")
    ha = separate.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    hb = inside.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    assert ha.history["loss"] == hb.history["loss"] and ha.history["val_loss"] == hb.history["val_loss"]
    _assert_same_training_state(separate, inside)
    # GradientMonitor reads flat_grads after every batch: fit steps separately for it.
    ma, mb = GradientMonitor(), GradientMonitor()
    separate.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[ma])
    inside.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[mb])
    assert ma.steps == mb.steps
    _assert_same_training_state(separate, inside)


def test_fit_refuses_a_non_finite_loss_before_any_update():
    x = np.ones((16, 20), np.float32)
    x[3] = np.nan  # a whole sample: input dropout cannot drop it all
    y = np.zeros(16, np.int64)
    for mode in ("separate", "in_backward"):
        model = _mixed()
        model.compile(optimizer="adam", loss="softmax_cross_entropy", optimizer_step=mode)
        before = model.flat_params.copy()
        with pytest.raises(fastdl.NonFiniteLossError):
            model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        np.testing.assert_array_equal(model.flat_params, before)
        assert model.optimizer.step_count == 0
        hist = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, on_nonfinite_loss="skip")
        assert hist.history["skipped_steps"] == [1]
        np.testing.assert_array_equal(model.flat_params, before)


def test_compute_gradients_still_fills_flat_grads():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 20)).astype(np.float32)
    y = rng.integers(0, 5, 9)
    separate, inside = _pair(_mixed, "sgd")
    for m in (separate, inside):
        m.train_step(x, y)
        m.compute_gradients(x, y)
    np.testing.assert_array_equal(separate.flat_grads, inside.flat_grads)


def _big():
    return Sequential([Dense(784, 1024, activation="relu"), Dense(1024, 1024, activation="relu"),
                       Dense(1024, 10)], seed=0)


@pytest.mark.parametrize("cache", [8 << 20, 0])
def test_auto_steps_in_the_backward_from_a_million_weights_past_the_cache(monkeypatch, cache):
    # 1.86M weights: Adam's separate pass reads 4 x 7.4 MB. Past half an 8 MiB last-level
    # cache, or where the C library cannot tell its size, the step goes in the backward.
    monkeypatch.setattr(fastdl.step_plan, "last_level_cache_bytes", lambda: cache)
    small = Sequential([Dense(784, 64, activation="relu"), Dense(64, 10)], seed=0)
    small.compile(optimizer="adam", loss="softmax_cross_entropy")
    assert small.step_plan.optimizer_step != "in_backward" and (small.step_plan.optimizer_step == "in_stack")
    big = _big()
    big.compile(optimizer="adam", loss="softmax_cross_entropy")
    # What is left for the step after the backward: exactly the three biases.
    starts = [off for name, off, shape, _, _ in big.param_layout if name.endswith(".b")]
    sizes = [int(np.prod(shape)) for name, off, shape, _, _ in big.param_layout if name.endswith(".b")]
    np.testing.assert_array_equal(big._stepper.rest_segments, [[a, a + n] for a, n in zip(starts, sizes)])
    big.compile(optimizer="adam", loss="softmax_cross_entropy", optimizer_step="separate")
    assert big.step_plan.optimizer_step != "in_backward" and big.step_plan.optimizer_step != "in_stack"


def test_auto_steps_separately_where_the_cache_holds_the_separate_pass(monkeypatch):
    # 29.8 MB for Adam (params, grads, two states) within half of 64 MiB: a separate
    # pass, not the owned step inside the DenseStack call either (that one is for small
    # networks).
    monkeypatch.setattr(fastdl.step_plan, "last_level_cache_bytes", lambda: 64 << 20)
    big = _big()
    big.compile(optimizer="adam", loss="softmax_cross_entropy")
    assert big.step_plan.optimizer_step != "in_backward" and big.step_plan.optimizer_step != "in_stack"
    # SGD without momentum reads 2 x 7.4 MB: within half of 32 MiB; Adam's 29.8 MB not.
    monkeypatch.setattr(fastdl.step_plan, "last_level_cache_bytes", lambda: 32 << 20)
    big.compile(optimizer=fastdl.optim.SGD(0.1), loss="softmax_cross_entropy")
    assert big.step_plan.optimizer_step != "in_backward"
    big.compile(optimizer="adam", loss="softmax_cross_entropy")
    assert big.step_plan.optimizer_step == "in_backward"
    # Asked for, it steps in the backward whatever the cache.
    big.compile(optimizer="adam", loss="softmax_cross_entropy", optimizer_step="in_backward")
    assert big.step_plan.optimizer_step == "in_backward"


def test_last_level_cache_size_is_known_where_linux_lists_an_l3():
    from pathlib import Path

    reported = fastdl._C.last_level_cache_bytes()
    assert isinstance(reported, int) and reported >= 0
    # Linux lists the caches in sysfs; where it lists an L3, the C library tells its size.
    caches = Path("/sys/devices/system/cpu/cpu0/cache")
    levels = [d for d in caches.glob("index*") if (d / "level").is_file()]
    if not any((d / "level").read_text().strip() == "3" for d in levels):
        pytest.skip("no L3 listed in sysfs")
    assert reported > 0


def test_bad_optimizer_step_is_refused_and_the_former_name_still_works():
    model = _mixed()
    with pytest.raises(ValueError, match="optimizer_step: expected one of .*'in_stack'.*, got 'yes'"):
        model.compile(optimizer="adam", optimizer_step="yes")
    with pytest.warns(DeprecationWarning, match="optimizer_step"):
        with pytest.raises(ValueError, match="step_in_backward: expected True, False or 'auto', got 'yes'"):
            model.compile(optimizer="adam", step_in_backward="yes")
    for old, new in ((True, "in_backward"), (False, "separate")):
        with pytest.warns(DeprecationWarning, match="optimizer_step"):
            model.compile(optimizer="adam", step_in_backward=old)
        assert model.step_plan.optimizer_step == new


def test_a_network_without_weight_matrices_steps_separately():
    model = Sequential([BatchNorm(6)], seed=0)
    model.compile(optimizer="sgd", loss="mse", optimizer_step="in_backward")
    assert model.step_plan.optimizer_step != "in_backward"
    x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    model.train_step(x, x)
