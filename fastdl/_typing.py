"""Type aliases of fastdl's annotations. Modules import them under
``typing.TYPE_CHECKING`` only, so annotations cost nothing at import time."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

#: a float32 numpy array
FloatArray: TypeAlias = npt.NDArray[np.float32]
#: any numpy array
AnyArray: TypeAlias = npt.NDArray[Any]
#: an array on a network's device: a float32 numpy array on the CPU; on the GPU a Numba
#: device array or any object exposing ``__cuda_array_interface__`` (untyped, hence Any)
DeviceArray: TypeAlias = Any
#: an array's shape
Shape: TypeAlias = Tuple[int, ...]
#: what a get_config() or config() returns and from_config() takes: plain data
Config: TypeAlias = Dict[str, Any]
#: an initializer: callable(shape, rng) -> float32 array
InitFunction: TypeAlias = Callable[[Shape, np.random.Generator], npt.NDArray[np.floating[Any]]]
#: what an ``init=``/``bias_init=`` argument accepts: a name, a number (a constant), a
#: config dict, an Initializer or any callable(shape, rng) -> array
InitializerLike: TypeAlias = Union[str, float, Config, InitFunction]
#: a file path
PathLike: TypeAlias = Union[str, "os.PathLike[str]"]
#: x of fit/evaluate/predict: an array (anything numpy reads) or an iterable of batches
Inputs: TypeAlias = Union[npt.ArrayLike, Iterable[Any]]
#: a data augmentation: transform(x_batch, rng) -> the batch (fastdl.augment)
Transform: TypeAlias = Callable[[npt.NDArray[np.float32], np.random.Generator], npt.NDArray[np.float32]]
#: shard(m) -> (lo, hi): the rows of an m-row batch this process computes
Shard: TypeAlias = Callable[[int], Tuple[int, int]]
#: a prepared batch or data set: (x, y, sample weights or None)
Arrays: TypeAlias = Tuple[FloatArray, AnyArray, Optional[FloatArray]]
#: the logs a callback hook gets: quantity name -> value
Logs: TypeAlias = Dict[str, Any]
