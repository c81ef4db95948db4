"""Benchmark: latency of every metric endpoint, uncached and once cached, against a hello-world
FastAPI endpoint served the same way in the same run.

Usage: ``python -m bench.api REPO [requests] [--branch NAME]`` from the repository root. REPO
is a local git repository (a bare clone will do; `--branch` picks the tracked branch, else its
HEAD); it is ingested through the real pipeline (dulwich poller -> InMemoryBus -> processor ->
an embedded PostgreSQL in a temporary directory). Then metre's app and a one-route hello-world
app are served by uvicorn (uvloop, httptools) on loopback ports in this process, and one
keep-alive client (in the same process and event loop, so its own time is counted, as it is for
hello-world) sends the requests one after another.

The endpoints: `/api/v1/repos/{id}`, one `/api/v1/repos/{id}/commits/{sha}` (the head), the
catalogue `/api/v1/metrics`, and for every name the catalogue lists the repository's form
`/api/v1/repos/{id}/metrics/<name>` and, when the metric is organisation-wide,
`/api/v1/metrics/<name>`; a metric with a `granularity` parameter is measured at each of its
choices, every other parameter at its default; then the parameters that read the most (a
whole-history hotspot window, the partners of the most changed file, the widest coupling
filter, every files sort). First pass: one request per endpoint on a fresh result cache
(uncached: the result is computed; ownership and truck-factor share one computation, and
releases and lead time one read of the commit graph, so the later of them find it memoised),
with the planner statistics as the ingest left them
(autovacuum may not have analysed the new rows yet). Second pass: the same after `ANALYZE` and
with every result cache emptied (the statistics autovacuum gathers soon after: plans change).
Third pass: `requests` sequential requests per endpoint (median, p99; cached results). Prints
the machine, the load (`uptime`) before and after each pass, the ingestion time, and for each
endpoint both first requests' times and CPU times (this process's and the PostgreSQL server's
processes', from /proc: what the answer cost on a loaded machine, where the wall time also
holds the wait for a core), the cached median and p99, the median's ratio to hello-world's,
the body size, and a mark when a first answer is over 250 ms or the cached median or p99 over
50 ms.
"""

from __future__ import annotations

import argparse
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
from metre.api.provenance import forget_results
from metre.api.server import server_config
from metre.ingest.releases import DEFAULT_PATTERNS, parse_patterns
from metre.pg import start_embedded, stop_embedded
from metre.processors.metrics.coupling import MAX_FILES_LIMIT
from metre.processors.store import PgStore
from metre.settings import Settings
from testkit.pipeline import pipeline

TOPIC, DLQ = "bench.commits", "bench.commits.dlq"
LIMIT_MS = 50.0
FIRST_LIMIT_MS = 250.0


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


def pg_cpu_ms(pgdata: Path) -> float:
    """CPU time (user + system) of the embedded server's processes so far, in milliseconds:
    with the API process's, what an answer cost, whatever the wait for a core added."""
    try:
        postmaster = (pgdata / "postmaster.pid").read_text().split()[0]
    except (OSError, IndexError):
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if fields[1] == postmaster or stat.parent.name == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total * 1e3 / tick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def ingest(
    store: PgStore, repo: Path, data_dir: Path, branch: str | None = None
) -> tuple[int, int, float]:
    """(repository id, commits, seconds) after the processor applied every event."""
    release_tags = parse_patterns(DEFAULT_PATTERNS)  # as the roles' default
    async with pipeline(store, data_dir, release_tags=release_tags) as p:
        t0 = time.perf_counter()
        repo_id = await p.ingest(repo, timeout=INGEST_TIMEOUT, branch=branch)
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
    first_cpu_ms: float = 0.0
    analysed_ms: float = 0.0
    analysed_cpu_ms: float = 0.0
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


def heavy(repo_id: int, top_path: str | None) -> dict[str, str]:
    """Label -> path of the non-default parameters that read the most."""
    base = f"/api/v1/repos/{repo_id}/metrics"
    out = {
        "hotspots?days=36500": f"{base}/hotspots?days=36500",
        "hotspots?days=30": f"{base}/hotspots?days=30",
        f"coupling?max_files={MAX_FILES_LIMIT}": f"{base}/coupling?max_files={MAX_FILES_LIMIT}",
        "coupling?min_shared=1": f"{base}/coupling?min_shared=1",
        "files?sort=lines": f"{base}/files?sort=lines",
        "files?sort=churn": f"{base}/files?sort=churn",
        "files?sort=path&exists=false": f"{base}/files?sort=path&exists=false",
        "files?offset=1000": f"{base}/files?offset=1000",
        "authors?policy=github": f"{base}/authors?policy=github",
    }
    if top_path is not None:  # the most changed file: the most partners
        q = httpx.QueryParams({"path": top_path})
        out["coupling?path=<most changed>"] = f"{base}/coupling?{q}"
        out[f"coupling?path=..&max_files={MAX_FILES_LIMIT}"] = (
            f"{base}/coupling?{q}&max_files={MAX_FILES_LIMIT}"
        )
    return out


async def first_pass(
    client: httpx.AsyncClient,
    urls: dict[str, str],
    results: dict[str, Result],
    attr: str,
    pgdata: Path,
) -> None:
    """One request per endpoint, each result computed (the caches are empty): its time, and
    the CPU time this process and the server spent on it."""
    for name, url in urls.items():
        cpu = time.process_time() * 1e3 + pg_cpu_ms(pgdata)
        ms, results[name].size = await timed_get(client, url)
        cpu = time.process_time() * 1e3 + pg_cpu_ms(pgdata) - cpu
        setattr(results[name], attr, ms)
        setattr(results[name], attr.replace("_ms", "_cpu_ms"), cpu)


async def main(repo: Path, n: int, branch: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="metre-bench-"))
    dsn = await asyncio.to_thread(start_embedded, root / "pg")
    store = await PgStore.connect(dsn)
    try:
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine()}")
        print(f"before ingestion: {load()}")
        await store.migrate()
        repo_id, commits, seconds = await ingest(store, repo, root, branch)
        print(f"repository: {repo} ({commits} commits ingested in {seconds:.1f} s)")
        hello = FastAPI()

        @hello.get("/hello")
        async def hi() -> dict[str, Any]:
            return {"hello": "world"}

        ports = free_port(), free_port()
        app = create_app(Settings(rate_limit=0), store)
        servers = [await serve(app, ports[0])]
        servers.append(await serve(hello, ports[1]))
        metre = f"http://127.0.0.1:{ports[0]}"
        async with httpx.AsyncClient(timeout=300) as client:
            head = (await client.get(f"{metre}/api/v1/repos/{repo_id}")).json()["head"]
            # the catalogue is served from the app without a result cache: asking for it
            # first warms nothing the measured endpoints use
            cat = (await client.get(f"{metre}/api/v1/metrics")).json()["metrics"]
            # the most changed file, read from the facts so that no endpoint is warmed
            top = await store.pool.fetchval(
                "SELECT path FROM file_changes WHERE repo_id = $1"
                ' GROUP BY path ORDER BY count(*) DESC, path COLLATE "C" LIMIT 1',
                repo_id,
            )
            urls = {"hello-world": f"http://127.0.0.1:{ports[1]}/hello"}
            urls |= {k: metre + v for k, v in endpoints(cat, repo_id, head).items()}
            urls |= {k: metre + v for k, v in heavy(repo_id, top).items()}
            results = {name: Result() for name in urls}
            print(f"before the first pass (statistics as ingested): {load()}")
            await first_pass(client, urls, results, "first_ms", root / "pg")
            await store.pool.execute("ANALYZE")
            forget_results(app)
            app.state.release_memo = None  # the release inputs' memo: recomputed too
            print(f"before the second pass (after ANALYZE, caches emptied): {load()}")
            await first_pass(client, urls, results, "analysed_ms", root / "pg")
            print(f"before the cached pass: {load()}")
            for name, url in urls.items():
                results[name].median_ms, results[name].p99_ms = await cached(client, url, n)
        for server, task in servers:
            server.should_exit = True
            await task
        print(f"after the requests: {load()}")
        print(
            "first request per endpoint as ingested, then after ANALYZE (caches emptied), then"
            f" {n} sequential keep-alive requests (cached)"
        )
        ref = results["hello-world"].median_ms
        head_row = f"{'endpoint':<38}{'first ms':>9}{'cpu':>6}{'analysed':>9}{'cpu':>6}"
        print(f"{head_row}{'median ms':>10}{'p99 ms':>8}{'x hello':>8}{'bytes':>8}")
        over = []
        for name, r in results.items():
            marks = []
            if max(r.first_ms, r.analysed_ms) > FIRST_LIMIT_MS:
                marks.append(f"FIRST OVER {FIRST_LIMIT_MS:.0f} ms")
            if r.median_ms > LIMIT_MS or r.p99_ms > LIMIT_MS:
                marks.append(f"OVER {LIMIT_MS:.0f} ms")
            if marks:
                over.append(name)
            print(
                f"{name:<38}{r.first_ms:>9.1f}{r.first_cpu_ms:>6.0f}{r.analysed_ms:>9.1f}"
                f"{r.analysed_cpu_ms:>6.0f}{r.median_ms:>10.2f}{r.p99_ms:>8.2f}"
                f"{r.median_ms / ref:>8.1f}{r.size:>8}" + "".join(f"  {m}" for m in marks)
            )
        slowest = max(results, key=lambda k: max(results[k].first_ms, results[k].analysed_ms))
        worst = max(results[slowest].first_ms, results[slowest].analysed_ms)
        print(f"slowest first answer: {slowest} ({worst:.2f} ms)")
        slowest = max(results, key=lambda k: results[k].p99_ms)
        print(f"slowest cached p99: {slowest} ({results[slowest].p99_ms:.2f} ms)")
        print(
            f"first over {FIRST_LIMIT_MS:.0f} ms or cached over {LIMIT_MS:.0f} ms:"
            f" {', '.join(over) if over else 'none'}"
        )
    finally:
        await store.close()
        await asyncio.to_thread(stop_embedded, root / "pg")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.api")
    parser.add_argument("repo", type=Path, help="a local git repository (bare will do)")
    parser.add_argument("requests", type=int, nargs="?", default=1000, help="cached requests")
    parser.add_argument("--branch", help="the branch to track (default: the repository's HEAD)")
    args = parser.parse_args()
    import uvloop  # with uvicorn[standard], as in production

    uvloop.run(main(args.repo.resolve(), args.requests, args.branch))
