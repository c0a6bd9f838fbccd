"""fastdl.interop: a model as an equivalent torch.nn.Sequential and back, for every
layer and activation; outputs equal within float32 rounding both ways."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import fastdl  # noqa: E402
from fastdl import BatchNorm, Dense, Dropout, Maxout, interop  # noqa: E402
from fastdl.activations import NAMES  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def inputs(n=64, k=6, scale=8.0, seed=0):
    # wide inputs: pre-activations beyond softplus's threshold 20 and hard_tanh's clamps
    return (np.random.default_rng(seed).standard_normal((n, k)) * scale).astype(np.float32)


def torch_out(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def trained(layers, loss="softmax_cross_entropy", seed=0, classes=3):
    m = fastdl.Sequential(layers, seed=seed)
    m.compile("adam", loss=loss)
    x = inputs(scale=1.0, seed=1)
    y = np.random.default_rng(2).integers(0, classes, len(x))
    if loss == "binary_cross_entropy":
        y = y.reshape(-1, 1).astype(np.float32) % 2
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)  # moves the PReLU slopes and BatchNorm statistics
    return m


def round_trip(m, x):
    """to_torch agrees with predict, from_torch(to_torch) with both."""
    net = interop.to_torch(m)
    assert isinstance(net, nn.Sequential) and not net.training
    ref = m.predict(x)
    np.testing.assert_allclose(torch_out(net, x), ref, rtol=RTOL, atol=ATOL)
    back = interop.from_torch(net)
    np.testing.assert_allclose(back.predict(x), ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(torch_out(net, x), back.predict(x), rtol=RTOL, atol=ATOL)
    return net, back


@pytest.mark.parametrize("act", NAMES)
def test_every_activation_both_ways(act):
    alpha = {"leaky_relu": 0.2, "elu": 0.7}.get(act)
    m = trained([Dense(6, 16, activation=act, alpha=alpha), Dense(16, 3)])
    net, back = round_trip(m, inputs())
    assert [type(mod).__name__ for mod in net][1] == {
        "linear": "Linear", "relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "leaky_relu": "LeakyReLU",
        "prelu": "PReLU", "elu": "ELU", "silu": "SiLU", "softplus": "Softplus", "hard_tanh": "Hardtanh",
        "gelu": "GELU"}[act]
    if act == "prelu":
        slopes = m.state_dict()["dense_0.alpha"]
        assert not np.allclose(slopes, 0.25)  # trained: one slope per unit
        np.testing.assert_array_equal(net[1].weight.detach().numpy(), slopes)
    if alpha is not None:
        assert back.get_config()["layers"][0]["alpha"] == pytest.approx(alpha)


def test_scalar_alpha_defaults_travel():
    m = fastdl.Sequential([Dense(6, 8, activation="leaky_relu"), Dense(8, 4, activation="elu"), Dense(4, 2)],
                          seed=0)
    net, _ = round_trip(m, inputs())
    assert net[1].negative_slope == pytest.approx(0.01) and net[3].alpha == pytest.approx(1.0)


def test_every_layer_type_both_ways():
    m = trained([Dropout(0.1), Dense(6, 12, activation="relu"), Dropout(0.3), BatchNorm(12),
                 Maxout(12, 5, pieces=3), Dropout(0.2), Dense(5, 7, use_bias=False, activation="tanh"),
                 BatchNorm(7, momentum=0.2, eps=1e-3), Dense(7, 3)])
    net, back = round_trip(m, inputs(scale=1.0))
    kinds = [type(mod).__name__ for mod in net]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "BatchNorm1d", "Maxout", "Dropout", "Linear", "Tanh",
                     "BatchNorm1d", "Linear"]
    bn = net[9]
    assert bn.momentum == pytest.approx(0.2) and bn.eps == pytest.approx(1e-3)
    np.testing.assert_array_equal(bn.running_var.numpy(), m.state_dict()["batchnorm_1.running_var"])
    assert net[7].bias is None
    assert back.get_config()["layers"] == m.get_config()["layers"]
    for (k, v), (k2, v2) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v, v2)


def test_scale_at_test_dropout():
    m = fastdl.Sequential([Dense(6, 8, activation="relu"), Dropout(0.4, scale_at_test=True),
                           Dropout(0.25, scale_at_test=True), Dense(8, 3)], seed=0)
    net, back = round_trip(m, inputs())
    assert isinstance(net[2], interop.ScaleAtTestDropout) and isinstance(net[3], interop.ScaleAtTestDropout)
    assert back.get_config()["layers"][1] == {"class": "Dropout", "p": 0.4, "scale_at_test": True}
    net.train()  # in training: a mask, no scaling
    h = torch.ones(1000, 8)
    kept = net[2](h)
    assert set(kept.unique().tolist()) <= {0.0, 1.0} and 0.5 < kept.mean().item() < 0.7


def test_output_activations():
    x = inputs(scale=1.0)
    soft = trained([Dense(6, 8, activation="relu"), Dense(8, 3, activation="softmax")])
    net, back = round_trip(soft, x)
    assert isinstance(net[-1], nn.Softmax) and back.output_activation == "softmax"
    np.testing.assert_allclose(torch_out(net, x).sum(axis=1), 1.0, rtol=1e-6)
    logits = interop.to_torch(soft, output_activation=False)
    assert isinstance(logits[-1], nn.Linear)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(torch_out(logits, x)), 1).numpy(), soft.predict(x),
                               rtol=RTOL, atol=ATOL)
    # a last sigmoid fused into the binary cross-entropy
    binary = trained([Dense(6, 8, activation="relu"), Dense(8, 1, activation="sigmoid")],
                     loss="binary_cross_entropy")
    assert binary.output_activation == "sigmoid"
    net, back = round_trip(binary, x)
    assert isinstance(net[-1], nn.Sigmoid)


def test_a_training_step_in_torch_matches_fastdl():
    """The exported module trains as the fastdl model does (BatchNorm's batch statistics
    and running update included)."""
    x = inputs(n=32, scale=1.0)
    y = np.random.default_rng(3).integers(0, 3, 32)
    m = fastdl.Sequential([Dense(6, 10, activation="silu"), BatchNorm(10), Dense(10, 3)], seed=4)
    m.compile(fastdl.optim.SGD(0.1), loss="softmax_cross_entropy")
    net = interop.to_torch(m).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    opt.step()
    fl = m.train_step(x, y)
    assert fl == pytest.approx(loss.item(), rel=1e-5)
    after = interop.from_torch(net.eval())
    for (k, v), (_, w) in zip(m.state_dict().items(), after.state_dict().items()):
        np.testing.assert_allclose(w, v, rtol=1e-4, atol=1e-6, err_msg=k)


def test_from_torch_flattens_nested_sequentials_and_skips_identity():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(6, 8), nn.GELU()), nn.Identity(),
                        nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 2)), nn.Softmax(dim=-1)).eval()
    m = interop.from_torch(net, seed=3)
    x = inputs(scale=1.0)
    assert m.seed == 3 and m.output_activation == "softmax"
    np.testing.assert_allclose(m.predict(x), torch_out(net, x), rtol=RTOL, atol=ATOL)


def test_from_torch_bn_without_affine_and_single_prelu_slope():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(8, affine=False)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    net = nn.Sequential(nn.Linear(6, 8), nn.PReLU(), bn, nn.Linear(8, 2)).eval()
    m = interop.from_torch(net)
    np.testing.assert_array_equal(m.state_dict()["dense_0.alpha"], np.full(8, 0.25, np.float32))
    np.testing.assert_allclose(m.predict(inputs()), torch_out(net, inputs()), rtol=RTOL, atol=1e-5)


@pytest.mark.parametrize("net, match", [
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 1)), r"module 1 \(Conv1d\): not supported"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.GELU(approximate="tanh")), "exact"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Softplus(beta=2)), "beta=1, threshold=20"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Hardtanh(0, 6)), r"clamps to \[-1, 1\]"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU()), "must directly follow a Linear"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)), "running"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, momentum=None)), "momentum=None"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1), nn.Linear(4, 2)), "Softmax only as the last"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Flatten()), "Flatten only as the first"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(-0.1)), "alpha >= 0"),
    (lambda: nn.Sequential(nn.Dropout(0.5)), "no Linear"),
    (lambda: nn.Linear(4, 4), None),
])
def test_from_torch_errors_name_the_module(net, match):
    if match is None:  # a lone Linear is a one-layer network
        assert interop.from_torch(net()).num_params == 20
        return
    with pytest.raises((TypeError, ValueError), match=match):
        interop.from_torch(net())
    with pytest.raises(TypeError, match="expected a torch.nn.Sequential"):
        interop.from_torch([nn.Linear(2, 2)])


def test_unbuilt_model_cannot_be_exported():
    with pytest.raises(fastdl.network.NotBuiltError, match="to_torch"):
        interop.to_torch(fastdl.Sequential([Dense(4), Dense(2)]))
