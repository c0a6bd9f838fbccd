"""fastdl.sklearn.MLPClassifier against scikit-learn's MLPClassifier: one fit of
784-256-10 ReLU, Adam, batch 200, 20 epochs on 8,000 MNIST images (float32 input),
side by side (``bench/fit_sklearn_mlp.py`` runs the seeds and both input dtypes).

    pytest bench/bench_sklearn.py --benchmark-only --benchmark-group-by=group

Goal: fastdl >= 5x faster at equal accuracy.
"""

import pytest

sklearn = pytest.importorskip("sklearn")


@pytest.mark.benchmark(group="fit MLPClassifier 784-256-10 MNIST 20 epochs")
@pytest.mark.parametrize("impl", ["fastdl", "sklearn"])
def bench_fit_mlp_classifier(benchmark, impl):
    import fit_mnist_dropout
    import fit_sklearn_mlp as F

    try:
        data = fit_mnist_dropout.load_data()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    if impl == "fastdl":
        from fastdl.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    result = benchmark.pedantic(F.run, args=(MLPClassifier, data), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["accuracy"] > 0.95
