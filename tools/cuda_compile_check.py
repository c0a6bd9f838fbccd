"""Compiles every GPU kernel variant to PTX for a given compute capability without a GPU
(NVVM only: pip install nvidia-nvvm nvidia-cuda-nvrtc), so that typing errors, float64
promotions and unsupported constructs that the simulator cannot see are caught.

    python tools/cuda_compile_check.py [--cc 9.0] [--show-f64]

Run it WITHOUT NUMBA_ENABLE_CUDASIM. It reports each kernel and whether its PTX contains
float64 arithmetic (intended only in the loss/final-sum reductions).
"""

import argparse
import os
import sys
import types as pytypes

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.exit("run without NUMBA_ENABLE_CUDASIM: this compiles real PTX")

import numba.cuda.dispatcher as _dispatcher  # noqa: E402
from numba import cuda  # noqa: E402
from numba import types as T  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--cc", default="9.0")
ap.add_argument("--show-f64", action="store_true")
args = ap.parse_args()
CC = tuple(int(v) for v in args.cc.split("."))

# No GPU here: device functions ask the current device for its compute capability.
_dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=CC)
import fastdl.cuda  # noqa: E402

fastdl.cuda.is_available = lambda: True

from fastdl.cuda import activations as A  # noqa: E402
from fastdl.cuda import batchnorm, column_grad, dropout, fused_mlp, gemm, losses, maxout, optim, reduce  # noqa: E402

f32, i64, u64, b1, f64 = T.float32, T.int64, T.uint64, T.boolean, T.float64
F1, F2, F3 = T.float32[::1], T.float32[:, ::1], T.float32[:, :, ::1]
U8_1, U8_2, I64_1, I64_2, F64_1 = T.uint8[::1], T.uint8[:, ::1], T.int64[::1], T.int64[:, ::1], T.float64[::1]

GEMM_SIG = (F2, F2, F2, F2, F1, F1, f32, U8_2, i64, i64, i64, i64, i64, u64, u64, u64, u64, u64, f32, u64)
COLGRAD_SIG = (F2, F1, F1, F2, F2, F1, f32, U8_1, U8_2, i64, i64, i64, f32, f32)

jobs = []
for ta in (False, True):
    for tb in (False, True):
        jobs.append((f"gemm store ta={ta} tb={tb}", gemm.gemm_kernel(ta, tb), GEMM_SIG))
for code, name in enumerate(A.NAMES):
    for epi, epi_name in ((gemm.DENSE, "dense"), (gemm.DROPOUT, "dropout")):
        jobs.append((f"gemm {epi_name} {name}", gemm.gemm_kernel(False, False, epi, code, True, name in A.NEEDS_Z),
                     GEMM_SIG))
    jobs.append((f"column_grad act {name}", column_grad.column_grad_kernel(column_grad.ACT, code, code != 0), COLGRAD_SIG))
    jobs.append((f"column_grad dropout {name}", column_grad.column_grad_kernel(column_grad.DROPOUT, code, True), COLGRAD_SIG))
    if name != "prelu":
        jobs.append((f"fused fwd {name}", fused_mlp._forward_kernel(code, name in A.NEEDS_Z),
                     (F2, F3, F3, F2, F1, I64_1, I64_1, I64_1, i64, i64, f32)))
        jobs.append((f"fused bwd {name}", fused_mlp._backward_kernel(code, name in A.NEEDS_Z),
                     (F3, F2, F3, F1, I64_1, I64_1, i64, i64, f32)))
jobs += [
    ("gemm maxout", gemm.gemm_kernel(False, False, gemm.MAXOUT, 0, True, False), GEMM_SIG),
    ("column_grad maxout", column_grad.column_grad_kernel(column_grad.MAXOUT, 0, True), COLGRAD_SIG),
    ("fused weight grads", fused_mlp._weight_grads, (F1, F2, F3, F3, F2, I64_1, I64_1, I64_1, i64, i64)),
    ("maxout fwd", maxout._maxout_forward, (F2, U8_2, F2, i64, i64, i64)),
    ("maxout bwd", maxout._maxout_backward, (F2, F2, U8_2, i64, i64, i64)),
    ("dropout mask+y", dropout._mask_kernel(True), (F1, U8_1, F1, i64, u64, u64, u64, u64, u64, f32, u64)),
    ("dropout mask", dropout._mask_kernel(False), (F1, U8_1, F1, i64, u64, u64, u64, u64, u64, f32, u64)),
    ("dropout mask+y unaligned", dropout._mask_kernel(True, False), (F1, U8_1, F1, i64, u64, u64, u64, u64, u64, f32, u64)),
    ("dropout mask unaligned", dropout._mask_kernel(False, False), (F1, U8_1, F1, i64, u64, u64, u64, u64, u64, f32, u64)),
    ("dropout bwd", dropout._dropout_backward, (F1, F1, U8_1, i64, f32)),
    ("dropout eval scale", dropout._scale, (F1, i64, f32)),
    ("final sum", reduce.final_sum, (F64_1, F64_1, i64, f64)),
    ("final sum and flag", reduce.final_sum_and_flag, (F64_1, F64_1, i64, f64, I64_1, i64)),
    ("softmax xent labels", losses._softmax_xent_rows, (F2, F1, I64_1, F2, I64_1, F2, b1, i64, i64, f32, f32, f32)),
    ("softmax xent int32", losses._softmax_xent_rows, (F2, F1, I64_1, F2, T.int32[::1], F2, b1, i64, i64, f32, f32, f32)),
    ("mse", losses._mse, (F1, F64_1, F1, F1, i64, f32)),
    ("bce", losses._bce, (F1, F64_1, F1, F1, i64, f32)),
    ("bn train", batchnorm._forward_train, (F2, F1, F1, F1, F1, F2, F1, F1, i64, i64, f32, f32, f32, f32)),
    ("bn eval", batchnorm._forward_eval, (F2, F2, F1, F1, F1, F1, i64, i64, f32)),
    ("bn bwd", batchnorm._backward, (F2, F1, F1, F2, F2, F1, F1, F1, i64, i64, f32)),
    ("sgd", optim._sgd, (F1, F1, F1, i64, f32, f32, f32, f32, f32, b1, b1, b1, I64_2, i64)),
    ("adagrad", optim._adagrad, (F1, F1, F1, i64, f32, f32, f32, f32, I64_2, i64)),
    ("rmsprop", optim._rmsprop, (F1, F1, F1, F1, F1, i64, f32, f32, f32, f32, f32, f32, f32, b1, I64_2, i64)),
    ("adadelta", optim._adadelta, (F1, F1, F1, F1, i64, f32, f32, f32, f32, f32, f32, I64_2, i64)),
    ("adam", optim._adam, (F1, F1, F1, F1, i64, f32, f32, f32, f32, f32, f32, f32, f32, b1, f32, f32, I64_2, i64)),
    ("max_norm", optim._max_norm, (F2, i64, i64, f32)),
]

failed = 0
for name, kernel, sig in jobs:
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
    except Exception as e:  # report every failure, not just the first
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        continue
    f64_ops = sum(1 for line in ptx.splitlines() if ".f64" in line and ("fma" in line or "mul" in line or "add" in line))
    print(f"ok   {name}" + (f"  ({f64_ops} f64 ops)" if f64_ops and args.show_f64 else ""))
print(f"{len(jobs) - failed}/{len(jobs)} kernels compiled for sm_{CC[0]}{CC[1]}")
sys.exit(1 if failed else 0)
