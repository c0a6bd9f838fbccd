"""The trainer: the one epoch loop behind ``Sequential.fit`` (and the loops of
``evaluate`` and ``predict``), its data adapters and the Strategy hooks through which
data-parallel training (fastdl.distributed) runs the same loop. docs/network.md,
"The trainer"."""

from fastdl.training.strategy import Strategy
from fastdl.training.trainer import NonFiniteLossError, evaluate, fit, predict

__all__ = ["fit", "evaluate", "predict", "NonFiniteLossError", "Strategy"]
