"""Benchmark: what the API's Prometheus middleware (api/instruments.py) costs per request.

Usage: ``python -m bench.http_metrics [requests]`` from the repository root. Calls one ASGI app
directly (no sockets, no client: what is left is the application's own time): `create_app`'s
`/healthz` (no database) with the metrics middleware, and the same app built without it, in
alternating rounds; also the cost of rendering `/metrics` (the registry to text) once every
series exists. Prints the machine, the load before and after, the medians and their ratio.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from typing import Any

from metre.api import app as app_module
from metre.api.app import create_app
from metre.health import metrics_body
from metre.settings import Settings


async def _call(app: Any, path: str) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    await app(scope, receive, send)


async def _round(app: Any, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        await _call(app, "/healthz")
    return (time.perf_counter() - began) / n


def _without_metrics() -> Any:
    """The same app, built with a no-op in place of the metrics middleware."""

    class Passthrough:
        def __init__(self, app: Any, **_: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    # The name app imported (not re-exported), patched where create_app looks it up.
    real = app_module.HttpMetrics  # type: ignore[attr-defined]
    app_module.HttpMetrics = Passthrough  # type: ignore[assignment,attr-defined]
    try:
        return create_app(Settings(rate_limit=0))
    finally:
        app_module.HttpMetrics = real  # type: ignore[attr-defined]


async def main(n: int) -> None:
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load before {os.getloadavg()[0]:.2f}")  # fmt: skip
    with_metrics = create_app(Settings(rate_limit=0))
    without = _without_metrics()
    for app in (with_metrics, without):  # warm up: routes compiled, series created
        await _round(app, 200)
    timed: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(15):
        timed["with"].append(await _round(with_metrics, n))
        timed["without"].append(await _round(without, n))
    a, b = statistics.median(timed["with"]), statistics.median(timed["without"])
    print(f"/healthz per request, median of 15 rounds of {n}: with metrics {a * 1e6:.1f} us, "
          f"without {b * 1e6:.1f} us, ratio {a / b:.3f} (+{(a - b) * 1e6:.1f} us)")  # fmt: skip
    renders = []
    for _ in range(50):
        began = time.perf_counter()
        body = metrics_body()
        renders.append(time.perf_counter() - began)
    print(f"/metrics render: {statistics.median(renders) * 1e3:.2f} ms median for "
          f"{len(body)} bytes; load after {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
