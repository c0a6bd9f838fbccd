"""`python -m fastdl`: prints what this installation runs on and checks one fused kernel.

`python -m fastdl --cmake-dir | --include-dir | --lib-dir` prints where the installed
C++ package lives (docs/cpp.md).
"""

import sys

import numpy as np

import fastdl
from fastdl import kernels


def main(argv=None):
    from fastdl._paths import print_paths

    if print_paths(sys.argv[1:] if argv is None else argv):
        return 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32), dtype=np.float32)
    w = rng.standard_normal((32, 16), dtype=np.float32)
    b = rng.standard_normal(16, dtype=np.float32)
    y = kernels.dense_forward(x, w, b, "relu")
    ok = np.allclose(y, np.maximum(x.astype(np.float64) @ w + b, 0), atol=1e-4)
    print(f"fastdl {fastdl.__version__}: isa={fastdl.get_isa()} threads={fastdl.get_num_threads()} "
          f"dense_forward check {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
