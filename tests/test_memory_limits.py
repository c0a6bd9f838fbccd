"""Layers and buffers too large for the machine: a MemoryError naming the layer and the
bytes asked for, never the mapping's OSError (ENOMEM) or the out-of-memory killer."""

import os
import subprocess
import sys
import textwrap

import pytest

import fastdl
from fastdl import BatchNorm, Dense, Maxout, _device


def test_a_dense_layer_larger_than_the_machine_is_refused_naming_it():
    with pytest.raises(MemoryError, match=r"^Dense \(Dense\(in_features=8, out_features=1000000000000\)\): its "
                                          r"parameters need 36000000000000 bytes \(32.7 TiB\), more than"):
        Dense(8, 10 ** 12)


def test_a_layer_sized_by_the_network_is_refused_naming_it():
    with pytest.raises(MemoryError, match=r"^dense_1 \(Dense\(in_features=4, out_features=1000000000000\)\): "
                                          r"its parameters need 20000000000000 bytes"):
        fastdl.Sequential([Dense(8, 4), Dense(10 ** 12)])


@pytest.mark.parametrize("make,name", [
    (lambda: BatchNorm(10 ** 13), "BatchNorm"),
    (lambda: Maxout(10 ** 6, 10 ** 6, pieces=4), "Maxout"),
    (lambda: Dense(10 ** 10, 10 ** 10), "Dense"),  # 10**20 weights: past int64, no wrap-around
])
def test_other_layers(make, name):
    with pytest.raises(MemoryError, match=rf"^{name} \({name}\(.*bytes"):
        make()


def test_a_buffer_the_system_cannot_give_is_a_memory_error_with_its_bytes():
    with pytest.raises(MemoryError, match=r"cannot allocate 400000000000000 bytes \(363.8 TiB\)"):
        _device.aligned_empty((10 ** 7, 10 ** 7))


def test_an_allocation_refused_by_the_address_space_limit_is_a_memory_error():
    """Under a process memory limit (ulimit -v) a layer that passes the machine check
    fails in the mapping: a MemoryError saying how many bytes, not OSError ENOMEM."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer maps its shadow memory up front: an address-space limit stops it first")
    code = textwrap.dedent("""
        import resource
        import fastdl
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + 512 * 2 ** 20, resource.RLIM_INFINITY))
        try:
            fastdl.Sequential([fastdl.Dense(8, 2 ** 27)])
        except MemoryError as e:
            print("MemoryError:", e)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__)))
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MemoryError: cannot allocate 4831838208 bytes (4.5 GiB)" in r.stdout, r.stdout + r.stderr
