"""Benchmark: latency of every metric endpoint, uncached and once cached, against a hello-world
FastAPI endpoint served the same way in the same run.

Usage: ``python -m bench.api REPO [requests]`` from the repository root. REPO is a local git
repository (a bare clone will do); it is ingested through the real pipeline (dulwich poller ->
InMemoryBus -> processor -> an embedded PostgreSQL in a temporary directory). Then metre's app
and a one-route hello-world app are served by uvicorn (uvloop, httptools) on loopback ports in
this process, and one keep-alive client (in the same process and event loop, so its own time is
counted, as it is for hello-world) sends the requests one after another.

The endpoints: `/api/v1/repos/{id}`, one `/api/v1/repos/{id}/commits/{sha}` (the head), the
catalogue `/api/v1/metrics`, and for every name the catalogue lists the repository's form
`/api/v1/repos/{id}/metrics/<name>` and, when the metric is organisation-wide,
`/api/v1/metrics/<name>`; a metric with a `granularity` parameter is measured at each of its
choices, every other parameter at its default. First pass: one request per endpoint on a fresh
result cache (uncached: the result is computed; ownership and truck-factor share one
computation, so the second of them finds it memoised). Second pass: `requests` sequential
requests per endpoint (median, p99; cached results). Prints the machine, the load (`uptime`)
before and after, the ingestion time, and for each endpoint the first request's time, the
cached median and p99, the median's ratio to hello-world's, the body size, and a mark when the
cached median or p99 is over 50 ms.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from metre.api.app import create_app
from metre.api.server import server_config
from metre.ingest.releases import DEFAULT_PATTERNS, parse_patterns
from metre.pg import start_embedded, stop_embedded
from metre.processors.store import PgStore
from metre.settings import Settings
from testkit.pipeline import pipeline

TOPIC, DLQ = "bench.commits", "bench.commits.dlq"
LIMIT_MS = 50.0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {sys.platform}"


def load() -> str:
    """`uptime`'s line (load averages over 1, 5, 15 minutes)."""
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
        return out.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def ingest(store: PgStore, repo: Path, data_dir: Path) -> tuple[int, int, float]:
    """(repository id, commits, seconds) after the processor applied every event."""
    release_tags = parse_patterns(DEFAULT_PATTERNS)  # as the roles' default
    async with pipeline(store, data_dir, release_tags=release_tags) as p:
        t0 = time.perf_counter()
        repo_id = await p.ingest(repo, timeout=INGEST_TIMEOUT)
        seconds = time.perf_counter() - t0
        return repo_id, p.poller.published, seconds


INGEST_TIMEOUT = 3600.0


async def serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    # served as metre serves it (metre.api.server): the hello-world app too, so the ratio compares
    # the apps and not two server configurations
    config = server_config(
        app, host="127.0.0.1", port=port, loop="none", http="httptools", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


@dataclass
class Result:
    first_ms: float = 0.0
    median_ms: float = 0.0
    p99_ms: float = 0.0
    size: int = 0


async def timed_get(client: httpx.AsyncClient, url: str) -> tuple[float, int]:
    """(milliseconds, body bytes) of one GET, which must answer 200."""
    t0 = time.perf_counter()
    r = await client.get(url)
    ms = (time.perf_counter() - t0) * 1e3
    r.raise_for_status()
    return ms, len(r.content)


async def cached(client: httpx.AsyncClient, url: str, n: int) -> tuple[float, float]:
    """(median, p99) in milliseconds over `n` sequential requests."""
    times = sorted([(await timed_get(client, url))[0] for _ in range(n)])
    return statistics.median(times), times[min(n - 1, int(n * 0.99))]


def endpoints(catalogue: list[dict[str, Any]], repo_id: int, head: str) -> dict[str, str]:
    """Label -> path of every endpoint measured (see the module's docstring)."""
    out = {
        "repos/{id}": f"/api/v1/repos/{repo_id}",
        "repos/{id}/commits/{sha}": f"/api/v1/repos/{repo_id}/commits/{head}",
        "metrics (catalogue)": "/api/v1/metrics",
    }
    org: dict[str, str] = {}
    for m in catalogue:
        name = m["name"]
        queries = [""]
        for p in m["parameters"]:
            if p["name"] == "granularity":
                queries = [f"?granularity={c}" for c in p["choices"]]
        for q in queries:
            out[f"{name}{q}"] = f"/api/v1/repos/{repo_id}/metrics/{name}{q}"
            if m["organisation_wide"]:
                org[f"org {name}{q}"] = f"/api/v1/metrics/{name}{q}"
    return out | org


async def main(repo: Path, n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="metre-bench-"))
    dsn = await asyncio.to_thread(start_embedded, root / "pg")
    store = await PgStore.connect(dsn)
    try:
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine()}")
        print(f"before ingestion: {load()}")
        await store.migrate()
        repo_id, commits, seconds = await ingest(store, repo, root)
        print(f"repository: {repo} ({commits} commits ingested in {seconds:.1f} s)")
        print(f"before the requests: {load()}")
        hello = FastAPI()

        @hello.get("/hello")
        async def hi() -> dict[str, Any]:
            return {"hello": "world"}

        ports = free_port(), free_port()
        servers = [await serve(create_app(Settings(rate_limit=0), store), ports[0])]
        servers.append(await serve(hello, ports[1]))
        metre = f"http://127.0.0.1:{ports[0]}"
        async with httpx.AsyncClient(timeout=300) as client:
            head = (await client.get(f"{metre}/api/v1/repos/{repo_id}")).json()["head"]
            # the catalogue is served from the app without a result cache: asking for it
            # first warms nothing the measured endpoints use
            cat = (await client.get(f"{metre}/api/v1/metrics")).json()["metrics"]
            urls = {"hello-world": f"http://127.0.0.1:{ports[1]}/hello"}
            urls |= {k: metre + v for k, v in endpoints(cat, repo_id, head).items()}
            results = {name: Result() for name in urls}
            for name, url in urls.items():  # first pass: fresh result cache
                results[name].first_ms, results[name].size = await timed_get(client, url)
            for name, url in urls.items():
                results[name].median_ms, results[name].p99_ms = await cached(client, url, n)
        for server, task in servers:
            server.should_exit = True
            await task
        print(f"after the requests: {load()}")
        print(f"first request per endpoint, then {n} sequential keep-alive requests (cached)")
        ref = results["hello-world"].median_ms
        head_row = f"{'endpoint':<34}{'first ms':>10}{'median ms':>11}{'p99 ms':>9}"
        print(f"{head_row}{'x hello':>9}{'bytes':>10}")
        over = []
        for name, r in results.items():
            mark = ""
            if r.median_ms > LIMIT_MS or r.p99_ms > LIMIT_MS:
                mark = f"  OVER {LIMIT_MS:.0f} ms"
                over.append(name)
            print(
                f"{name:<34}{r.first_ms:>10.2f}{r.median_ms:>11.2f}{r.p99_ms:>9.2f}"
                f"{r.median_ms / ref:>9.1f}{r.size:>10}{mark}"
            )
        slowest = max(results, key=lambda k: results[k].p99_ms)
        print(f"slowest cached p99: {slowest} ({results[slowest].p99_ms:.2f} ms)")
        print(f"over {LIMIT_MS:.0f} ms once cached: {', '.join(over) if over else 'none'}")
    finally:
        await store.close()
        await asyncio.to_thread(stop_embedded, root / "pg")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m bench.api REPO [requests]")
    import uvloop  # with uvicorn[standard], as in production

    uvloop.run(main(Path(sys.argv[1]).resolve(), int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
