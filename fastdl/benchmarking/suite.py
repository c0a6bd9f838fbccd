"""The CPU case list of ``fastdl bench``: the kernel cases (fastdl.benchmarking.cases)
and the network ones (fastdl.benchmarking.network), in the order the table shows them."""

from . import bf16_cases, network
from .cases import (adam_case, batchnorm_backward_case, batchnorm_forward_case, dense_backward_case,
                    dense_forward_case, dense_maxout_case, dropout_case, gemm_case, softmax_ce_case)

__all__ = ["cpu_cases"]


def cpu_cases(sizes):
    cases = [dense_forward_case(s) for s in sizes.dense_shapes]
    cases += [dense_backward_case(s) for s in sizes.dense_shapes]
    cases += [gemm_case(sizes.gemm_n), softmax_ce_case(sizes.ce_shape),
              batchnorm_forward_case(sizes.bn_shape), batchnorm_backward_case(sizes.bn_shape),
              adam_case(sizes.adam_n), dropout_case(sizes.dropout_shape), dense_maxout_case(sizes.maxout_shape)]
    cases += bf16_cases.bf16_cases(sizes)
    cases += [network.train_step_case(name, widths, batch) for name, widths, batch in sizes.train_steps]
    cases.append(network.fit_case(sizes))
    return cases
