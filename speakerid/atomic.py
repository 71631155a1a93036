"""Atomic file writes: a hidden temp file in the destination folder, fsync, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves the previous version (or nothing) in place. Every
writer of results, checkpoints, registries, shards and exports goes through here.

A crash between writing and renaming (kill -9, power loss) leaves the hidden temp file behind. Temp files are
named ``.<name>.<pid>@<host>.<random>.tmp``; the next successful write of the same file removes those whose
writer (same host, that pid) is no longer running, and nameless-writer temps of older versions once they are an
hour old. A temp file of a writer that is still running is never touched.

    with atomic_open("runs/x/last.pt") as f:   # binary by default; mode="w" for text
        torch.save(obj, f)
    write_atomic("report.json", json.dumps(report))
"""

from __future__ import annotations

import glob
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "write_atomic"]

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_WRITER = re.compile(r"(\d+)@([A-Za-z0-9-]+)\.[a-z0-9_]+\.tmp")  # after ".<name>.": pid@host.random.tmp
_LEGACY = re.compile(r"[a-z0-9_]{8}\.tmp")  # the same, as written before writer ids
LEGACY_TEMP_AGE_S = 3600.0  # temps without a writer id (older versions) count as stale after this long


def _pid_running(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Remove temp files of ``path`` left by crashed writers (see the module docstring)."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        m = _WRITER.fullmatch(tmp.name[len(prefix) :])
        try:
            if m is not None:
                pid, host = int(m.group(1)), m.group(2)
                if host != _HOST or pid == os.getpid() or _pid_running(pid):
                    continue
            elif not _LEGACY.fullmatch(tmp.name[len(prefix) :]) or (
                time.time() - tmp.stat().st_mtime < LEGACY_TEMP_AGE_S
            ):
                continue
            tmp.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: the write itself succeeded
            pass


def _umask_mode() -> int:
    """The permissions an ordinary ``open()`` would give a new file (mkstemp makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``, on an error it is removed.

    ``mode`` is "wb" or "w" (text; ``kwargs`` such as ``encoding``/``newline`` go to ``open``). Parent folders are
    created. After the rename, temp files of ``path`` left by crashed writers are removed.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_HOST}.", suffix=".tmp", dir=path.parent)
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
    _remove_stale_temps(path)


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding=encoding) as f:
            f.write(data)
    else:
        with atomic_open(path) as f:
            f.write(data)
