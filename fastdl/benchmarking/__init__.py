"""``fastdl bench``: a comparison report of fastdl against PyTorch, numpy and
scikit-learn on this machine (docs/benchmarks.md).

One concern per module: :mod:`.machine` (machine info, measured peaks), :mod:`.sizes`
(run profiles), :mod:`.cases` (the CPU kernel cases), :mod:`.network` (train_step and
the whole-fit comparison), :mod:`.suite` (the CPU case list), :mod:`.cuda_cases` (the GPU set), :mod:`.data` (MNIST or
digits), :mod:`.timing` (validate, then interleaved medians), :mod:`.report` (the
table), :mod:`.results` (JSON and compare), :mod:`.plot` (the ratio chart),
:mod:`.cli` (arguments).
"""

from .cli import main

__all__ = ["main"]
