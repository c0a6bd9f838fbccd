import numpy as np
import pytest

import fastdl

#: Kernel paths this CPU can run; tests parametrised over `isa` run on each.
ISAS = tuple(i for i in ("avx512", "avx2", "generic") if fastdl.cpu_supports(i))


@pytest.fixture(params=ISAS)
def isa(request):
    """Forces one ISA path for the duration of a test (like FASTDL_ISA does)."""
    previous = fastdl.get_isa()
    fastdl.set_isa(request.param)
    yield request.param
    fastdl.set_isa(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
