"""sample_weight, class_weight and weighted_metrics in fit and evaluate, with Keras 3's
semantics (each sample's loss times its weight, summed, divided by the batch size) and
against PyTorch's weighted cross-entropy; the weighting runs in the loss kernels."""

import numpy as np
import pytest

import fastdl
from fastdl import Dense, Dropout


def data(n=48, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    return x, y, w


def model(seed=0, dropout=0.0, **compile_kw):
    layers = [Dense(6, 8, activation="tanh")] + ([Dropout(dropout)] if dropout else []) + [Dense(8, 3)]
    m = fastdl.Sequential(layers, seed=seed)
    compile_kw.setdefault("optimizer", fastdl.optim.SGD(lr=0.1))
    m.compile(**compile_kw)
    return m


def test_weighted_loss_and_steps_match_pytorch():
    torch = pytest.importorskip("torch")
    x, y, w = data()
    m = model()
    params = {name: v.copy() for name, v in m.named_parameters()}
    lin1, lin2 = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)
    with torch.no_grad():
        for lin, k in ((lin1, "dense_0"), (lin2, "dense_1")):
            lin.weight.copy_(torch.from_numpy(params[f"{k}.w"].T.copy()))
            lin.bias.copy_(torch.from_numpy(params[f"{k}.b"]))
    net = torch.nn.Sequential(lin1, torch.nn.Tanh(), lin2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    tx, ty, tw = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
    h = m.fit(x, y, sample_weight=w, epochs=3, batch_size=48, shuffle=False, verbose=0)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(net(tx), ty, reduction="none") * tw).sum() / len(ty)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert h.history["loss"] == pytest.approx(losses, rel=1e-5)
    np.testing.assert_allclose(m.named_parameters()[0][1], lin1.weight.detach().numpy().T, rtol=1e-4, atol=1e-6)
    # class weights: PyTorch's weight= with reduction="sum", divided by the batch size (Keras's rule)
    cw = {0: 0.5, 1: 2.0, 2: 1.5}
    loss = m.evaluate(x, y, sample_weight=np.array([cw[int(k)] for k in y], np.float32))
    ref = torch.nn.functional.cross_entropy(net(tx), ty, weight=torch.tensor([0.5, 2.0, 1.5]), reduction="sum")
    assert loss == pytest.approx(ref.item() / len(y), rel=1e-5)


def test_class_weight_is_the_sample_weight_of_each_class():
    x, y, _ = data()
    cw = {0: 0.5, 1: 2.0}  # class 2 unlisted: weight 1
    a, b = model(dropout=0.2), model(dropout=0.2)
    ha = a.fit(x, y, class_weight=cw, epochs=2, batch_size=16, verbose=0)
    hb = b.fit(x, y, sample_weight=np.array([cw.get(int(k), 1.0) for k in y], np.float32), epochs=2,
               batch_size=16, verbose=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert ha.history["loss"] == hb.history["loss"]
    one_hot = model(dropout=0.2)
    one_hot.fit(x, np.eye(3, dtype=np.float32)[y], class_weight=cw, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(one_hot.flat_params, a.flat_params, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="class_weight: cannot be combined with sample_weight"):
        a.fit(x, y, class_weight=cw, sample_weight=np.ones(48, np.float32), verbose=0)
    with pytest.raises(ValueError, match="class_weight: class 7 is outside"):
        a.fit(x, y, class_weight={7: 1.0}, verbose=0)


def test_unit_weights_train_as_no_weights_and_weights_reach_every_plan():
    x, y, w = data()
    plain, ones = model(), model()
    plain.fit(x, y, epochs=2, batch_size=16, verbose=0)
    ones.fit(x, y, sample_weight=np.ones(48, np.float32), epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(plain.flat_params, ones.flat_params)
    runs = []
    for plan in ("separate", "in_backward", "in_stack"):
        m = model(optimizer=fastdl.optim.Adam(1e-2), optimizer_step=plan)
        assert m.step_plan.execution == "dense_stack"
        runs.append(m)
    layers = model(optimizer=fastdl.optim.Adam(1e-2), optimizer_step="separate")
    layers._stepper._stacks = None  # the stage-by-stage kernels
    runs.append(layers)
    for m in runs:
        m.fit(x, y, sample_weight=w, epochs=2, batch_size=16, verbose=0)
    for m in runs[1:]:
        np.testing.assert_array_equal(m.flat_params, runs[0].flat_params)


def test_weighted_metrics_and_weighted_evaluation():
    x, y, w = data()
    m = model(metrics=["accuracy"], weighted_metrics=["accuracy"])
    logs = m.evaluate(x, y, sample_weight=w, return_dict=True)
    pred = m.predict(x).argmax(1)
    assert set(logs) == {"loss", "accuracy", "weighted_accuracy"}
    assert logs["accuracy"] == pytest.approx(np.mean(pred == y))
    assert logs["weighted_accuracy"] == pytest.approx(np.sum(w * (pred == y)) / np.sum(w))
    only = model(weighted_metrics=["accuracy"])
    assert set(only.evaluate(x, y, sample_weight=w, return_dict=True)) == {"loss", "accuracy"}
    h = m.fit(x[:32], y[:32], sample_weight=w[:32], validation_data=(x[32:], y[32:], w[32:]), epochs=1,
              batch_size=32, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[32:], y[32:], sample_weight=w[32:])[0], rel=1e-6)
    assert set(h.history) >= {"weighted_accuracy", "val_weighted_accuracy"}


def test_weights_split_with_validation_split_and_come_with_batches():
    x, y, w = data()
    a, b = model(), model()
    a.fit(x, y, sample_weight=w, validation_split=0.25, epochs=1, batch_size=12, shuffle=False, verbose=0)
    b.fit([(x[s:s + 12], y[s:s + 12], w[s:s + 12]) for s in range(0, 36, 12)], epochs=1, verbose=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    with pytest.raises(ValueError, match="sample_weight: expected 48 weights"):
        a.fit(x, y, sample_weight=w[:10], verbose=0)
    with pytest.raises(ValueError, match="sample_weight: weight -.* at index 0 is negative"):
        a.fit(x, y, sample_weight=-w, verbose=0)
