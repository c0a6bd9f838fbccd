"""Network-level cases: one training step, and a whole fit against scikit-learn.

They use the network API (``fastdl.Sequential``, ``Dense``,
``fastdl.optim.Adam``, ``compile``, ``train_step``, ``fit``, ``predict``) when this
build has it, and skip with a note when it does not.

A training step cannot be compared number for number with PyTorch's (different
initial weights), so it is validated by what it must do: 30 steps on one fixed batch
whose labels a linear teacher assigns must at least halve the loss, for fastdl and
PyTorch alike (the tiny test profile asks less). A whole fit is validated by its test accuracy.
"""

import warnings

import numpy as np

import fastdl

from . import data, peers
from .cases import Case, Prepared, Skip, torch_or_note
from .timing import Impl

LR = 1e-3


def fastdl_network_api():
    seq = getattr(fastdl, "Sequential", None)
    if seq is None:
        raise Skip("fastdl.Sequential is not in this build")
    dense = getattr(fastdl, "Dense", None) or getattr(getattr(fastdl, "layers", None), "Dense", None)
    adam = getattr(getattr(fastdl, "optim", None), "Adam", None)
    if dense is None or adam is None:
        raise Skip("fastdl.Sequential found but not fastdl.Dense/fastdl.layers.Dense or fastdl.optim.Adam")
    return seq, dense, adam


def fastdl_mlp(widths, seed=0, precision=None):
    seq, dense, adam = fastdl_network_api()
    last = len(widths) - 2
    layers = [dense(i, o, activation="relu" if j < last else "linear")
              for j, (i, o) in enumerate(zip(widths[:-1], widths[1:]))]
    model = seq(layers, seed=seed)
    kw = {} if precision is None else {"precision": precision}
    model.compile(optimizer=adam(lr=LR), loss="softmax_cross_entropy", **kw)
    return model


def torch_mlp(t, widths, seed=0):
    t.manual_seed(seed)
    mods = []
    for j, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(t.nn.Linear(i, o))
        if j < len(widths) - 2:
            mods.append(t.nn.ReLU())
    model = t.nn.Sequential(*mods)
    return model, t.optim.Adam(model.parameters(), lr=LR)


def teacher_batch(widths, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, widths[0]), dtype=np.float32)
    teacher = rng.standard_normal((widths[0], widths[-1]))
    return x, np.argmax(x @ teacher, 1).astype(np.int64)


def step_flops(widths, batch):
    pairs = list(zip(widths[:-1], widths[1:]))
    macs = sum(i * o for i, o in pairs)
    # forward, weight gradients, input gradients (none for the first layer)
    return 2.0 * batch * (2 * macs + macs - pairs[0][0] * pairs[0][1])


def learns(step, steps=30, ratio=0.5):
    losses = [float(step()) for _ in range(steps)]
    assert np.all(np.isfinite(losses)), f"non-finite loss: {losses}"
    assert losses[-1] < ratio * losses[0], (
        f"loss went {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps on one batch (needs < {ratio:g}x)")


def train_step_case(name, widths, batch):
    def build(ctx):
        fastdl_network_api()
        x, y = teacher_batch(widths, batch)
        model = fastdl_mlp(widths)
        fd_step = lambda: model.train_step(x, y)  # noqa: E731
        ratio = ctx.sizes.learn_ratio
        impls = [Impl("fastdl", fd_step, validate=lambda: learns(fd_step, ratio=ratio))]
        notes = [f"Adam lr 1e-3, ReLU, softmax-CE; validated: 30 steps on one batch bring the loss below "
                 f"{ratio:g}x its start"]
        t = torch_or_note(notes)
        if t is not None:
            tmodel, opt = torch_mlp(t, widths)
            tx, ty = t.from_numpy(x), t.from_numpy(y)
            loss_fn = t.nn.CrossEntropyLoss()

            def torch_step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(tmodel(tx), ty)
                loss.backward()
                opt.step()
                return loss.item()

            impls.append(Impl("torch", torch_step, validate=lambda: learns(torch_step, ratio=ratio)))
        return Prepared(impls, step_flops(widths, batch), "GFLOP/s", notes)

    return Case(f"train_step {name}", "train_step", build)


def accuracy(pred, y):
    return float((np.asarray(pred).argmax(1) == y).mean())


def fit_case(sizes):
    def build(ctx):
        s = ctx.sizes
        found = data.fit_data(s.fit_train, s.fit_test, ctx.mnist)
        if found is None:
            raise Skip("no MNIST files found and scikit-learn (digits) not installed")
        xtr, ytr, xte, yte, what = found
        widths = (xtr.shape[1], s.fit_hidden, 10)
        epochs, batch = s.fit_epochs, 128
        runs = [0, 0, 0]  # a different seed for each timed run, per implementation
        floor = s.fit_min_accuracy
        notes = [f"{what}: {len(xtr)} train / {len(xte)} test images, {'-'.join(map(str, widths))} ReLU, "
                 f"Adam lr 1e-3, batch {batch}, {epochs} epochs, no early stopping, no L2; "
                 f"validated: test accuracy >= {floor}"]

        def check(acc):
            assert acc >= floor, f"test accuracy {acc:.4f} below {floor}"

        metric = lambda acc: {"accuracy": acc}  # noqa: E731
        impls = []
        try:
            fastdl_network_api()
        except Skip as e:
            notes.append(f"fastdl column skipped: {e}")
        else:
            def fastdl_fit():
                runs[0] += 1
                model = fastdl_mlp(widths, seed=runs[0])
                model.fit(xtr, ytr, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
                return accuracy(model.predict(xte), yte)

            impls.append(Impl("fastdl", fastdl_fit, check, metric, per_run_check=True))
        t = torch_or_note(notes)
        if t is not None:
            def torch_fit():
                runs[1] += 1
                model, opt = torch_mlp(t, widths, seed=runs[1])
                loss_fn = t.nn.CrossEntropyLoss()
                tx, ty = t.from_numpy(xtr), t.from_numpy(ytr)
                g = t.Generator().manual_seed(runs[1])
                for _ in range(epochs):
                    perm = t.randperm(len(tx), generator=g)
                    for i in range(0, len(tx), batch):
                        idx = perm[i:i + batch]
                        opt.zero_grad(set_to_none=True)
                        loss_fn(model(tx[idx]), ty[idx]).backward()
                        opt.step()
                with t.no_grad():
                    return accuracy(model(t.from_numpy(xte)).numpy(), yte)

            impls.append(Impl("torch", torch_fit, check, metric, per_run_check=True))
        if peers.sklearn_available():
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.neural_network import MLPClassifier

            def sklearn_fit():
                runs[2] += 1
                clf = MLPClassifier(hidden_layer_sizes=(s.fit_hidden,), activation="relu", solver="adam",
                                    alpha=0.0, batch_size=batch, learning_rate_init=LR, max_iter=epochs,
                                    shuffle=True, random_state=runs[2], tol=0.0,
                                    n_iter_no_change=epochs + 1, early_stopping=False)
                with warnings.catch_warnings():  # max_iter reached is the point here
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(xtr, ytr)
                return float((clf.predict(xte) == yte).mean())

            impls.append(Impl("sklearn", sklearn_fit, check, metric, per_run_check=True))
        else:
            notes.append("scikit-learn not installed: sklearn column skipped")
        if not impls or impls[0].name != "fastdl":
            raise Skip("; ".join(notes[1:]) or "fastdl's fit is not available")
        return Prepared(impls, None, None, notes, rounds=s.fit_rounds)

    return Case(f"fit MLP {sizes.fit_hidden} hidden, {sizes.fit_epochs} epochs", "fit", build)
