"""The GPU kernel set under the names of docs/kernels.md (fastdl.kernels routes a GPU
array's call here). Inputs: arrays exposing __cuda_array_interface__; outputs: Numba
device arrays."""

from fastdl.cuda.activations import NAMES as ACTIVATIONS, NEEDS_Z
from fastdl.cuda.batchnorm import batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train
from fastdl.cuda.dense import dense_backward, dense_forward, matmul
from fastdl.cuda.dropout import dense_dropout_backward, dense_dropout_forward, dropout_backward, dropout_forward
from fastdl.cuda.losses import binary_cross_entropy, mse, softmax_cross_entropy
from fastdl.cuda.maxout import dense_maxout_backward, dense_maxout_forward, maxout_backward, maxout_forward
from fastdl.cuda.optim import adadelta_step, adagrad_step, adam_step, max_norm_, rmsprop_step, sgd_step

__all__ = [
    "ACTIVATIONS", "NEEDS_Z",
    "dense_forward", "dense_backward", "matmul",
    "maxout_forward", "maxout_backward", "dense_maxout_forward", "dense_maxout_backward",
    "dropout_forward", "dropout_backward", "dense_dropout_forward", "dense_dropout_backward",
    "softmax_cross_entropy", "mse", "binary_cross_entropy",
    "batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward",
    "sgd_step", "adagrad_step", "rmsprop_step", "adadelta_step", "adam_step", "max_norm_",
]
