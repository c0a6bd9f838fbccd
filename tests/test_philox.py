"""Philox-4x32-10: Random123's known answers, and the numpy reference against the kernels."""

import numpy as np
import pytest

from fastdl import _C

import philox_reference as ph

# Random123's kat_vectors for philox4x32_10: (counter, key, result).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_known_answers(counter, key, expected):
    assert _C.philox4x32(counter, key) == expected
    assert ph.philox4x32_int(counter, key) == expected
    got = ph.philox4x32(*counter, *key)
    assert tuple(int(v) for v in got) == expected


def test_kernel_matches_reference_on_random_counters():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counter = tuple(int(v) for v in rng.integers(0, 2**32, 4))
        key = tuple(int(v) for v in rng.integers(0, 2**32, 2))
        assert _C.philox4x32(counter, key) == ph.philox4x32_int(counter, key)


@pytest.mark.parametrize("c", [0, 16, 12345, 2**32 - 1, 2**32 - 5, 2**32 - 16, 2**32, 3 * 2**32 - 7, 2**40 + 3])
def test_vectorised_keep_bits_match_reference(isa, c):
    """Every ISA's vectorised generator at any counter, including where the counter's low
    word wraps inside one call (counter word 1 = i >> 34 must carry per lane)."""
    for p, seed, step, stream in [(0.5, 0, 0, 0), (0.1, 2**64 - 1, 2**32 - 1, 2**32 - 1), (0.9, 987654321012, 5, 3)]:
        bits, nbits = _C._dropout_keep_bits_at(c, p, seed, step, stream)
        idx = 4 * c + np.arange(nbits, dtype=np.uint64)
        want = ph.keep(idx, p, seed, step, stream)
        got = np.array([(bits >> t) & 1 for t in range(nbits)], dtype=bool)
        np.testing.assert_array_equal(got, want)
        assert bits >> nbits == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="counter"):
        _C.philox4x32((1, 2, 3), (0, 0))
    with pytest.raises(ValueError, match="key"):
        _C.philox4x32((0, 0, 0, 0), (0, 2**32))
    with pytest.raises(TypeError, match="counter"):
        _C.philox4x32((0, 0, 0, 0.5), (0, 0))
