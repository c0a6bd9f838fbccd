"""Writing files so that a crash or an error mid-write never leaves a half-written one."""

import os
import tempfile

__all__ = ["write_atomic"]


def write_atomic(path, data):
    """Writes the bytes `data` to `path` through a temporary file in the same folder,
    flushed, fsync'ed and renamed over `path` (os.replace): a crash or an error midway
    leaves any previous file at `path` as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
