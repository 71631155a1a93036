"""Atomic file writes: a hidden temp file in the destination folder, fsync, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves the previous version (or nothing) in place. Every
writer of results, checkpoints, registries, shards and exports goes through here.

    with atomic_open("runs/x/last.pt") as f:   # binary by default; mode="w" for text
        torch.save(obj, f)
    write_atomic("report.json", json.dumps(report))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "write_atomic"]


def _umask_mode() -> int:
    """The permissions an ordinary ``open()`` would give a new file (mkstemp makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``, on an error it is removed.

    ``mode`` is "wb" or "w" (text; ``kwargs`` such as ``encoding``/``newline`` go to ``open``). Parent folders are
    created.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _umask_mode())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding=encoding) as f:
            f.write(data)
    else:
        with atomic_open(path) as f:
            f.write(data)
