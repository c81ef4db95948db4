"""Serving (I/O): listening sockets and uvicorn inside a process that handles its own signals."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import uvicorn

from metre import errors
from metre.api.app import create_app
from metre.api.server import server_config
from metre.processors.lag import GroupLag
from metre.processors.store import PgStore
from metre.readiness import Probe
from metre.settings import Settings


class QuietServer(uvicorn.Server):
    """uvicorn inside a process whose signals metre handles itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, *, search: int = 0) -> socket.socket:
    """Bind `port`, or with `search` > 0 the first free one of the next `search` ports."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in range(port, port + search + 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise errors.cannot_listen(host, candidate, exc) from exc
            last = exc
            continue
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    if search:
        raise errors.StartupError(
            f"cannot listen on {host}: ports {port} to {port + search} are all in use; choose "
            "another with --port (METRE_PORT)"
        ) from last
    raise errors.port_in_use(host, port) from last


async def serve_api(
    settings: Settings,
    store: PgStore | None,
    sock: socket.socket,
    stop: asyncio.Event,
    readiness: Mapping[str, Probe] | None = None,
    required: Iterable[str] = ("database",),
    lag: GroupLag | None = None,
) -> None:
    app = create_app(settings, store, readiness=readiness, required=required, lag=lag)
    await serve_asgi(app, sock, stop, settings.log_level.lower())


async def serve_asgi(
    app: Any,
    sock: socket.socket,
    stop: asyncio.Event,
    log_level: str,
    lifespan: Literal["on", "off"] = "on",
) -> None:
    """Serve `app` on `sock` until `stop`. uvicorn's own log setup is skipped (log_config=None):
    its records go through metre's handler and format (metre/logs.py) like every other."""
    # Client addresses from the socket (METRE_TRUSTED_PROXIES decides forwarding), JSON 400s.
    config = server_config(
        app,
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        loop="none",
    )
    server = QuietServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await _first_of(serving, stop)
    server.should_exit = True
    await serving


async def _first_of(task: asyncio.Task[Any], stop: asyncio.Event) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def api_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - display only
    return f"http://{shown}:{port}"
