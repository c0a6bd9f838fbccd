"""Data augmentation for image mini-batches, applied in place by ``fit(..., augment=[...])``.

Each transform is called as ``t(x_batch, rng)`` on the float32 (N, features) copy of
the mini-batch that fit gathers (never on your data), with the model's shuffling
generator, so a seeded run stays reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from fastdl._typing import FloatArray

__all__ = ["HorizontalFlip", "GaussianNoise"]


class HorizontalFlip:
    """Mirrors each image left-right with probability p. image_shape: (height, width) or
    (height, width, channels) of one flattened row, channels last."""

    def __init__(self, image_shape: Sequence[int], p: float = 0.5) -> None:
        self.image_shape = tuple(int(d) for d in image_shape)
        if len(self.image_shape) not in (2, 3) or min(self.image_shape) < 1:
            raise ValueError(f"image_shape: expected (height, width) or (height, width, channels), got {image_shape!r}")
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: FloatArray, rng: np.random.Generator) -> FloatArray:
        n = x.shape[0]
        size = int(np.prod(self.image_shape))
        if x.shape[1] != size:
            raise ValueError(f"x: rows of {x.shape[1]} features do not hold images of shape {self.image_shape}")
        flip = np.flatnonzero(rng.random(n) < self.p)
        if flip.size:
            imgs = x.reshape((n,) + self.image_shape)
            imgs[flip] = imgs[flip, :, ::-1]
        return x


class GaussianNoise:
    """Adds N(0, std^2) noise to every feature (noise injection as a regularizer)."""

    def __init__(self, std: float = 0.1) -> None:
        std = float(std)
        if not std >= 0:
            raise ValueError(f"std: expected a standard deviation >= 0, got {std}")
        self.std = std
        self._buf: FloatArray | None = None

    def __call__(self, x: FloatArray, rng: np.random.Generator) -> FloatArray:
        if self.std == 0:
            return x
        if self._buf is None or self._buf.shape != x.shape:
            self._buf = np.empty(x.shape, np.float32)
        rng.standard_normal(out=self._buf, dtype=np.float32)
        self._buf *= np.float32(self.std)
        x += self._buf
        return x
