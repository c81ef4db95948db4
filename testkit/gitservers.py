"""git servers on loopback for tests and benches (I/O: processes, sockets): `git daemon` for
``git://`` and `git http-backend` behind a WSGI server for smart HTTP, each with upload-pack's
packet trace written where asked, so a test can read what was sent."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from testkit.broker import free_port
from testkit.githttp import http_backend

__all__ = ["git_daemon", "smart_http"]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def git_daemon(base: Path, env: dict[str, str], trace: Path | None = None) -> Iterator[int]:
    """`git daemon` exporting every repository under `base`, running meanwhile; its port."""
    port = free_port()
    if trace is not None:
        env = {**env, "GIT_TRACE_PACKET": str(trace)}
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={port}",
         f"--base-path={base}", str(base)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def smart_http(root: Path, trace: Path) -> Iterator[int]:
    """Smart HTTP for every repository under `root` (`git http-backend`), served meanwhile
    from a thread; its port."""
    server = make_server("127.0.0.1", 0, http_backend(root, trace), WSGIServer,
                         handler_class=_Quiet)  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
