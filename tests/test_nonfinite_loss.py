"""fit and a NaN/Inf training loss: it stops with NonFiniteLossError naming the epoch and
step (or skips the step with on_nonfinite_loss="skip"), and the refused step changes
nothing: no parameter update, no optimizer state, no batch-norm running statistics."""

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout


def data(n=96, k=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = (rng.standard_normal((c, k))[y] * 3 + rng.standard_normal((n, k))).astype(np.float32)
    return x, y


def model(seed=3):
    m = fastdl.Sequential([Dense(6, 16, activation="relu"), BatchNorm(16), Dropout(0.2), Dense(16, 3)], seed=seed)
    m.compile(optimizer=fastdl.optim.Adam(lr=1e-2), metrics=["accuracy"])
    return m


def bn_stats(m):
    st = next(s for s in m._graph.stages if hasattr(s, "running_mean"))
    return st.running_mean.copy(), st.running_var.copy()


def test_nan_in_a_batch_stops_fit_naming_epoch_and_step_and_nothing_of_that_step_is_applied():
    x, y = data()
    x_bad = x.copy()
    x_bad[2 * 16 + 5, 3] = np.nan  # in the third mini-batch of 16 (no shuffling)
    ref = model()
    ref.fit(x[:32], y[:32], epochs=1, batch_size=16, shuffle=False, verbose=0)  # the two good steps
    m = model()
    with pytest.raises(fastdl.NonFiniteLossError, match=r"nan at epoch 1, step 3 \(samples 32 to 47") as err:
        m.fit(x_bad, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert (err.value.epoch, err.value.step) == (0, 2) and np.isnan(err.value.loss)
    assert isinstance(err.value, FloatingPointError)
    np.testing.assert_array_equal(m.flat_params, ref.flat_params)
    for a, b in zip(bn_stats(m), bn_stats(ref)):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(m.flat_params).all()
    # The optimizer state is that of the good steps too: training on from here matches
    # training on from the reference (same dropout step counter aside, so compare a
    # dropout-free prediction instead).
    np.testing.assert_array_equal(m.predict(x), ref.predict(x))


def test_inf_target_in_mse_is_caught_too():
    x, _ = data()
    t = np.zeros((len(x), 3), np.float32)
    t[40, 1] = np.inf
    m = fastdl.Sequential([Dense(6, 3)], seed=0)
    m.compile(loss="mse", optimizer="sgd")
    before = m.flat_params.copy()
    with pytest.raises(fastdl.NonFiniteLossError, match="inf at epoch 1, step 2"):
        m.fit(x, t, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert not np.array_equal(m.flat_params, before)  # step 1 was applied
    assert np.isfinite(m.flat_params).all()


def test_skip_drops_only_the_bad_steps_and_counts_them():
    x, y = data()
    x_bad = x.copy()
    x_bad[[5, 70]] = np.inf
    m = model()
    hist = m.fit(x_bad, y, epochs=3, batch_size=16, shuffle=True, verbose=0, on_nonfinite_loss="skip")
    assert hist.history["skipped_steps"] == [2, 2, 2]
    assert np.isfinite(m.flat_params).all()
    assert all(np.isfinite(v) for v in hist.history["loss"])
    assert np.isfinite(bn_stats(m)[0]).all() and np.isfinite(bn_stats(m)[1]).all()
    # With the bad rows gone, the same run trains on what the skipped steps did not hold.
    assert m.evaluate(x, y, return_dict=True)["accuracy"] > 0.6


def test_skip_with_every_step_bad_leaves_the_model_untouched():
    x, y = data(n=32)
    x[:] = np.nan
    m = model()
    before = m.flat_params.copy()
    hist = m.fit(x, y, epochs=2, batch_size=16, verbose=0, on_nonfinite_loss="skip")
    assert hist.history["skipped_steps"] == [2, 2]
    assert all(np.isnan(v) for v in hist.history["loss"])
    np.testing.assert_array_equal(m.flat_params, before)


def test_diverging_learning_rate_stops_with_a_clear_error():
    x, y = data()
    m = fastdl.Sequential([Dense(6, 32, activation="relu"), Dense(32, 3)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD(lr=1e12))
    with pytest.raises(fastdl.NonFiniteLossError, match="Lower the learning rate") as err:
        m.fit(x, y, epochs=50, batch_size=16, verbose=0)
    assert len(err.value.history.history.get("loss", [])) == err.value.epoch


def test_bad_option_is_a_value_error():
    x, y = data()
    with pytest.raises(ValueError, match="on_nonfinite_loss: expected 'raise' or 'skip', got 'ignore'"):
        model().fit(x, y, verbose=0, on_nonfinite_loss="ignore")
