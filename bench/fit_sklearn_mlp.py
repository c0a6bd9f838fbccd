"""fastdl.sklearn.MLPClassifier against scikit-learn's own MLPClassifier on the same
data and settings: the first 8,000 images of the MNIST test set in
../shared/data/mnist (float32 pixels in [0, 1]), scored on the last 2,000; the same
architecture (784-256-10 ReLU by default), solver (Adam, learning rate 1e-3), batch size
(200, scikit-learn's 'auto'), alpha (1e-4) and number of epochs (20; tol=0 and
n_iter_no_change=epochs, so neither stops early). Fit wall time and test accuracy side
by side; each seed runs both, one after the other.

    python bench/fit_sklearn_mlp.py [--hidden 256] [--epochs 20] [--seeds 0,1,2] [--threads 2]
                                    [--dtypes float32,float64]

Goal: fastdl >= 5x faster at equal accuracy. --dtypes: the input arrays both estimators
get. scikit-learn's MLP computes in the input's precision (float32 input: float32
GEMMs; float64 -- what most scikit-learn data is -- float64), fastdl always in float32
(converting the input once). The folder is taken from $FASTDL_MNIST, else
../shared/data/mnist beside the repository.
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np

import fastdl
from fit_mnist_dropout import load_data


def settings(hidden, epochs, seed):
    return dict(hidden_layer_sizes=hidden, activation="relu", solver="adam", alpha=1e-4, batch_size=200,
                learning_rate_init=1e-3, max_iter=epochs, tol=0.0, n_iter_no_change=epochs, shuffle=True,
                random_state=seed)


def run(estimator_class, data, hidden=(256,), epochs=20, seed=0, dtype=np.float32):
    from sklearn.exceptions import ConvergenceWarning

    (xtr, ytr), (xte, yte) = data
    xtr, xte = xtr.astype(dtype), xte.astype(dtype)
    clf = estimator_class(**settings(hidden, epochs, seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is reached on purpose
        t0 = time.perf_counter()
        clf.fit(xtr, ytr)
        wall = time.perf_counter() - t0
    return {"accuracy": float(clf.score(xte, yte)), "wall_s": round(wall, 3), "epochs": clf.n_iter_}


def main():
    import sklearn
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from fastdl.sklearn import MLPClassifier as FastdlMLP

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="256", help="hidden layer sizes, comma-separated")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", default="0")
    p.add_argument("--dtypes", default="float32,float64", help="input dtypes, comma-separated")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="fastdl's threads (numpy's BLAS "
                   "threads come from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)")
    args = p.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    fastdl.set_num_threads(args.threads)
    data = load_data()
    print(f"fastdl {fastdl.__version__} isa={fastdl.get_isa()} threads={args.threads}; scikit-learn "
          f"{sklearn.__version__}, numpy {np.__version__}; 784-{'-'.join(map(str, hidden))}-10 relu, adam 1e-3, "
          f"batch 200, alpha 1e-4, {args.epochs} epochs; {len(data[0][0])} train / {len(data[1][0])} test images")
    for dtype in args.dtypes.split(","):
        walls = {"fastdl": [], "sklearn": []}
        for seed in (int(s) for s in args.seeds.split(",")):
            for name, cls in (("fastdl", FastdlMLP), ("sklearn", SklearnMLP)):
                r = run(cls, data, hidden, args.epochs, seed, np.dtype(dtype))
                walls[name].append(r["wall_s"])
                print(f"{dtype} input, seed {seed} {name:>8}: accuracy {r['accuracy']:.4f}  fit {r['wall_s']:.2f}s  "
                      f"({r['epochs']} epochs)", flush=True)
        f, s = statistics.median(walls["fastdl"]), statistics.median(walls["sklearn"])
        print(f"{dtype} input, median fit: fastdl {f:.2f}s, scikit-learn {s:.2f}s: {s / f:.1f}x", flush=True)

if __name__ == "__main__":
    main()
