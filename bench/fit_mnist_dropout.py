"""The issue's end-to-end job: 20 epochs of 784-1024-1024-10 ReLU with input dropout 0.2
and dropout 0.5 after each hidden layer, Adam 1e-3, batch 128, trained on the first 8,000
images of the MNIST test set in ../shared/data/mnist and scored on the last 2,000; fastdl
vs the same network in PyTorch (its own default initialisation), wall time and accuracy.

    python bench/fit_mnist_dropout.py [--seeds 0,1,2] [--epochs 20] [--threads 2] [--bf16]

Goal: fastdl >= 96% accuracy, in less wall time than PyTorch. --bf16 also fits fastdl with
compile(precision="bf16") (goal: accuracy within 0.3 points of fp32, wall time <= 0.6x). The folder is taken from
$FASTDL_MNIST, else ../shared/data/mnist beside the repository.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

import fastdl


def mnist_folder():
    if os.environ.get("FASTDL_MNIST"):
        return Path(os.environ["FASTDL_MNIST"])
    here = Path(__file__).resolve()
    for base in here.parents[2:4]:
        if (base / "shared" / "data" / "mnist").is_dir():
            return base / "shared" / "data" / "mnist"
    raise FileNotFoundError("no MNIST folder: set FASTDL_MNIST or put the t10k files in ../shared/data/mnist")


def load_data():
    x, y = fastdl.datasets.mnist(mnist_folder(), split="test")
    return (x[:8000], y[:8000]), (x[8000:], y[8000:])


def run_fastdl(data, seed=0, epochs=20, precision="fp32"):
    (xtr, ytr), (xte, yte) = data
    model = fastdl.Sequential([fastdl.Dropout(0.2), fastdl.Dense(784, 1024, activation="relu"), fastdl.Dropout(0.5),
                               fastdl.Dense(1024, 1024, activation="relu"), fastdl.Dropout(0.5),
                               fastdl.Dense(1024, 10)], seed=seed)
    model.compile(optimizer=fastdl.optim.Adam(lr=1e-3), loss="softmax_cross_entropy", metrics=["accuracy"],
                  precision=precision)
    t0 = time.perf_counter()
    model.fit(xtr, ytr, epochs=epochs, batch_size=128, verbose=0)
    wall = time.perf_counter() - t0
    return {"accuracy": model.evaluate(xte, yte)[1], "wall_s": round(wall, 2)}


def run_torch(data, seed=0, epochs=20):
    import torch

    (xtr, ytr), (xte, yte) = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(784, 1024), torch.nn.ReLU(),
                                torch.nn.Dropout(0.5), torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Dropout(0.5), torch.nn.Linear(1024, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(xtr), torch.from_numpy(ytr)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(tx))
        for s in range(0, len(tx), 128):
            idx = perm[s:s + 128]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
    wall = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
    return {"accuracy": float(acc), "wall_s": round(wall, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--bf16", action="store_true", help="also fit fastdl with precision='bf16'")
    args = p.parse_args()
    fastdl.set_num_threads(args.threads)
    data = load_data()
    print(f"fastdl {fastdl.__version__} isa={fastdl.get_isa()} threads={args.threads}; "
          f"{len(data[0][0])} train / {len(data[1][0])} test images, {args.epochs} epochs")
    runs = [("fastdl", run_fastdl)]
    if args.bf16:
        runs.append(("fastdl bf16", lambda data, seed, epochs: run_fastdl(data, seed, epochs, precision="bf16")))
    if not args.skip_torch:
        import torch

        torch.set_num_threads(args.threads)
        runs.append((f"torch {torch.__version__}", run_torch))
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, run in runs:
            r = run(data, seed=seed, epochs=args.epochs)
            print(f"seed {seed} {name:>14}: accuracy {r['accuracy']:.4f}  wall {r['wall_s']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
