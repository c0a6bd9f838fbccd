"""Model files: bounded resources, one exception contract, the saved file's mode.

- fastdl.load checks every entry's declared size against what the metadata says the
  model needs before inflating anything: a small file that inflates to hundreds of MB,
  or an npy header declaring 10**12 elements, is refused without the allocation.
- Every malformed file is a fastdl.ModelFileError naming the file and what is wrong:
  a foreign compression method, the zip encryption flag, JSON nested past the
  recursion limit, a huge npy header, counters that are not counts.
- model.save gives a new file the mode open() would (0o666 less the umask) and keeps an
  existing file's; saving into a missing folder names the target path.
"""

import io
import json
import os
import stat
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense


def _model():
    m = fastdl.Sequential([Dense(6, 8, activation="relu"), BatchNorm(8), Dense(8, 3)], seed=0)
    m.compile(optimizer="adam", loss="softmax_cross_entropy")
    rng = np.random.default_rng(0)
    m.fit(rng.standard_normal((32, 6)).astype(np.float32), rng.integers(0, 3, 32), epochs=1, batch_size=8,
          verbose=0)
    return m


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.fdl"
    _model().save(path)
    return path


def _entries(path):
    """name -> raw npy bytes of every entry."""
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _meta(entries):
    return json.loads(np.load(io.BytesIO(entries["fastdl.json.npy"])).tobytes())


def _write(dst, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(dst, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return dst


def _with_meta(entries, edit):
    meta = _meta(entries)
    edit(meta)
    return {**entries, "fastdl.json.npy": _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))}


def _refused(path, *words):
    with pytest.raises(fastdl.ModelFileError) as e:
        fastdl.load(path)
    msg = str(e.value)
    assert msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, msg
    return msg


# -- resource limits -------------------------------------------------------------------------
def test_an_entry_inflating_far_past_the_model_is_refused_before_inflating(saved, tmp_path):
    """A 64 MB params entry that deflates to about 64 KB, for a model of 99 parameters:
    refused from the sizes the archive declares, without the 64 MB."""
    entries = _entries(saved)
    bomb = tmp_path / "bomb.fdl"
    count = 16 * 1024 * 1024
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in entries.items():
            if name == "params.npy":
                with z.open(name, "w", force_zip64=True) as f:
                    f.write(np.lib.format.magic(1, 0))
                    h = np.lib.format.header_data_from_array_1_0(np.zeros(count, np.float32))
                    np.lib.format.write_array_header_1_0(f, h)
                    chunk = bytes(1 << 22)
                    for _ in range(count * 4 // len(chunk)):
                        f.write(chunk)
            else:
                z.writestr(name, data)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        _refused(bomb, "params", "declares")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"load allocated {peak} bytes before refusing"


def test_an_npy_header_declaring_10_12_elements_is_refused_without_allocating(saved, tmp_path):
    entries = _entries(saved)
    good = entries["params.npy"]
    n = len(np.load(io.BytesIO(good)))
    lied = good.replace(f"({n},)".encode(), b"(1000000000000,)")
    lied = lied.replace(b" " * (len(lied) - len(good)) + b"\n", b"\n", 1) if len(lied) > len(good) else lied
    assert len(lied) == len(good)
    _refused(_write(tmp_path / "huge.fdl", {**entries, "params.npy": lied}), "params", "1000000000000")


def test_an_npy_header_of_megabytes_is_refused(saved, tmp_path):
    entries = _entries(saved)
    big = np.lib.format.magic(2, 0) + struct.pack("<I", 50_000_000) + b" " * 1000
    _refused(_write(tmp_path / "hdr.fdl", {**entries, "params.npy": big}), "params", "npy header of 50000000 bytes")


def test_entries_the_metadata_does_not_describe_are_refused(saved, tmp_path):
    entries = _entries(saved)
    _refused(_write(tmp_path / "extra.fdl", {**entries, "payload.npy": _npy(np.zeros(3, np.float32))}), "payload")


# -- one exception contract ------------------------------------------------------------------
def _patch_headers(data, offsets):
    """Applies (signature, offset, value) patches to every local and central header."""
    out = bytearray(data)
    for sig, off, fmt, value in offsets:
        pos = out.find(sig)
        while pos >= 0:
            struct.pack_into(fmt, out, pos + off, value)
            pos = out.find(sig, pos + 4)
    return bytes(out)


LOCAL, CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


def test_a_foreign_compression_method_is_a_model_file_error(saved, tmp_path):
    data = _patch_headers(saved.read_bytes(), [(LOCAL, 8, "<H", 99), (CENTRAL, 10, "<H", 99)])
    bad = tmp_path / "method.fdl"
    bad.write_bytes(data)
    _refused(bad, "compression method 99")


def test_the_encryption_flag_is_a_model_file_error(saved, tmp_path):
    data = _patch_headers(saved.read_bytes(), [(LOCAL, 6, "<H", 1), (CENTRAL, 8, "<H", 1)])
    bad = tmp_path / "encrypted.fdl"
    bad.write_bytes(data)
    _refused(bad, "encrypted")


def test_one_flipped_compression_byte_is_a_model_file_error(saved, tmp_path):
    """Only the central directory's method byte flipped (the local header disagrees)."""
    data = bytearray(saved.read_bytes())
    pos = data.find(CENTRAL)
    data[pos + 10] ^= 0xFF
    bad = tmp_path / "flip.fdl"
    bad.write_bytes(bytes(data))
    _refused(bad)


def test_deeply_nested_metadata_is_a_model_file_error(saved, tmp_path):
    entries = _entries(saved)
    deep = b'{"format": "fastdl.Sequential", "version": 1, "model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    entries["fastdl.json.npy"] = _npy(np.frombuffer(deep, np.uint8))
    _refused(_write(tmp_path / "deep.fdl", entries), "nested")


@pytest.mark.parametrize("where,key,value", [
    ("meta", "step", -7), ("meta", "step", 1e308), ("meta", "step", True), ("meta", "step", 2 ** 40),
    ("meta", "step", None), ("compile", "optimizer_step", -3), ("compile", "optimizer_step", 2.0),
    ("compile", "optimizer_step", 2 ** 63),
])
def test_counters_are_validated_at_load(saved, tmp_path, where, key, value):
    def edit(meta):
        (meta if where == "meta" else meta["compile"])[key] = value

    bad = _write(tmp_path / "counter.fdl", _with_meta(_entries(saved), edit))
    _refused(bad, f"{key} = {value!r}")


def test_a_good_file_still_loads(saved):
    m = fastdl.load(saved)
    assert m.optimizer.step_count == 4 and m._step == 4


# -- the saved file's mode and the missing folder ---------------------------------------------
@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "m.fdl"
    fastdl.Sequential([Dense(2, 2)], seed=0).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    with open(tmp_path / "plain", "w"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_saving_over_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o077)
    path = tmp_path / "m.fdl"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    fastdl.Sequential([Dense(2, 2)], seed=0).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    fastdl.load(path)


def test_saving_into_a_missing_folder_names_the_target(tmp_path):
    path = tmp_path / "no" / "such" / "m.fdl"
    with pytest.raises(FileNotFoundError) as e:
        fastdl.Sequential([Dense(2, 2)], seed=0).save(path)
    assert e.value.filename == str(path)
    assert str(tmp_path / "no" / "such") in str(e.value) and ".tmp" not in str(e.value)
