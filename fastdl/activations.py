"""The activations the kernels know, read from the C++ registry (csrc/include/fastdl/
activation.h, exported by fastdl._C as ACTIVATION_TABLE): the one source of their names,
codes, which ones need the pre-activation z in the backward, and what their alpha is.
The layers, the kernel API and the CUDA kernels all take them from here."""

from fastdl._C import ACTIVATION_TABLE

__all__ = ["NAMES", "CODES", "NEEDS_Z", "SCALAR_ALPHA", "LEARNED_ALPHA", "TABLE"]

#: one dict per activation: name, code, needs_z, alpha ("none", "scalar", "learned"), default_alpha
TABLE = tuple(dict(row) for row in ACTIVATION_TABLE)
#: the names, in code order
NAMES = tuple(row["name"] for row in TABLE)
#: name -> the code the kernels switch on
CODES = {row["name"]: row["code"] for row in TABLE}
#: activations whose backward needs z (dense_forward returns (y, z) for them)
NEEDS_Z = tuple(row["name"] for row in TABLE if row["needs_z"])
#: activations with a scalar alpha -> its default
SCALAR_ALPHA = {row["name"]: row["default_alpha"] for row in TABLE if row["alpha"] == "scalar"}
#: activations that learn one alpha per unit
LEARNED_ALPHA = tuple(row["name"] for row in TABLE if row["alpha"] == "learned")
