"""Atomic file writes, used for every file lstmbt writes (store, checkpoints, run folders, reports): a file
appears whole or not at all (temp file in the same folder, flushed to disk, then ``os.replace``), so a crash
or a reader racing the writer never sees half a file, and an old file is never lost to a failed write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)        # mkstemp makes 0600; data and reports are meant to be read by others too
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:   # make the content durable before it takes the real name
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8, ``\\n`` newlines) or bytes to ``path`` atomically; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)
