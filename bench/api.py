"""Benchmark: latency of the per-file metric endpoints once cached, against a hello-world
FastAPI endpoint served the same way in the same run.

Usage: ``python -m bench.api REPO [requests]`` from the repository root. REPO is a local git
repository; it is ingested through the real pipeline (dulwich poller -> InMemoryBus ->
processor -> an embedded PostgreSQL in a temporary directory). Then metre's app and a one-route
hello-world app are served by uvicorn (uvloop, httptools) on loopback ports in this process,
and one keep-alive client sends the requests one after another (after one warm-up request per
URL, so metre's answers come from its result cache). Prints the machine, the ingestion time,
median and p99 latency per endpoint, and each median's ratio to hello-world's.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from ingest.bus import InMemoryBus
from ingest.poller import Poller, PollerConfig
from metre.pg import start_embedded, stop_embedded
from metre.settings import Settings
from processors.runner import Processor
from processors.store import PgStore

TOPIC, DLQ = "bench.commits", "bench.commits.dlq"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def ingest(store: PgStore, repo: Path, mirrors: Path) -> tuple[int, int, float]:
    """(repository id, commits, seconds) after the processor applied every event."""
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics([TOPIC, DLQ])
    poller = Poller(bus, store, PollerConfig(mirrors_dir=mirrors, topic=TOPIC))
    processor = Processor(bus, store, TOPIC, "bench", 500, DLQ, fetch_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    t0 = time.perf_counter()
    row = await store.add_repo(str(repo), None)
    claimed = await store.claim_due_repo(600)
    assert claimed is not None
    await poller.poll(claimed)
    while processor.handled < poller.published:
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - t0
    stop.set()
    await task
    await bus.stop()
    return row.id, poller.published, seconds


async def serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="none", http="httptools", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


async def measure(client: httpx.AsyncClient, url: str, n: int) -> tuple[float, float]:
    """(median, p99) in milliseconds over `n` sequential requests after one warm-up."""
    (await client.get(url)).raise_for_status()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get(url)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    times.sort()
    return statistics.median(times) * 1e3, times[min(n - 1, int(n * 0.99))] * 1e3


async def main(repo: Path, n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="metre-bench-"))
    dsn = await asyncio.to_thread(start_embedded, root / "pg")
    store = await PgStore.connect(dsn)
    try:
        await store.migrate()
        repo_id, commits, seconds = await ingest(store, repo, root / "mirrors")
        hello = FastAPI()

        @hello.get("/hello")
        async def hi() -> dict[str, Any]:
            return {"hello": "world"}

        ports = free_port(), free_port()
        servers = [await serve(create_app(Settings(rate_limit=0), store), ports[0])]
        servers.append(await serve(hello, ports[1]))
        base = f"/api/v1/repos/{repo_id}/metrics"
        urls = {
            "hello-world": f"http://127.0.0.1:{ports[1]}/hello",
            "files?limit=100": f"http://127.0.0.1:{ports[0]}{base}/files?limit=100",
            "hotspots": f"http://127.0.0.1:{ports[0]}{base}/hotspots",
            "ownership?limit=100": f"http://127.0.0.1:{ports[0]}{base}/ownership?limit=100",
            "truck-factor": f"http://127.0.0.1:{ports[0]}{base}/truck-factor",
            "coupling": f"http://127.0.0.1:{ports[0]}{base}/coupling",
        }
        print(f"machine: {machine()}")
        print(f"repository: {repo} ({commits} commits ingested in {seconds:.1f} s)")
        print(f"{n} sequential keep-alive requests per endpoint after one warm-up (cached)")
        results: dict[str, tuple[float, float]] = {}
        async with httpx.AsyncClient() as client:
            for name, url in urls.items():
                results[name] = await measure(client, url, n)
        ref = results["hello-world"][0]
        print(f"{'endpoint':<22}{'median ms':>11}{'p99 ms':>10}{'x hello':>9}")
        for name, (med, p99) in results.items():
            print(f"{name:<22}{med:>11.3f}{p99:>10.3f}{med / ref:>9.2f}")
        for server, task in servers:
            server.should_exit = True
            await task
    finally:
        await store.close()
        await asyncio.to_thread(stop_embedded, root / "pg")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m bench.api REPO [requests]")
    import uvloop  # with uvicorn[standard], as in production

    uvloop.run(main(Path(sys.argv[1]).resolve(), int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
