"""One `metre up` per data directory (I/O: a lock file held for the life of the process).

The lock is `flock` on `<data dir>/metre.lock`: the kernel lets go of it when the process
ends, however it ends (SIGKILL included), so a stale lock never blocks a restart. The file
holds the holder's pid, so a second `metre up` can say who holds it; the holder's address is
in `api.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import orjson

from metre.errors import data_dir_taken

LOCK_FILE = "metre.lock"


class DataDirLock:
    """An exclusive hold on a data directory; `release` (or the process's end) lets go."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `metre.errors.StartupError` naming the holder; changes
        nothing else."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Not inherited by children (PEP 446): the embedded PostgreSQL must not keep it.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise data_dir_taken(str(self.path.parent), holder(self.path.parent)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock
            self._fd = None


def holder(data_dir: Path) -> str:
    """ "pid N, serving URL" of the process holding the lock, as far as its files tell."""
    parts = []
    with contextlib.suppress(OSError, ValueError):
        parts.append(f"pid {int((data_dir / LOCK_FILE).read_text().split()[0])}")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        parts.append(f"serving {orjson.loads((data_dir / 'api.json').read_bytes())['url']}")
    return ", ".join(parts) or "pid unknown"
