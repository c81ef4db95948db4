"""Distributed mode end to end: separate poller, processor and API processes over the real
Kafka-protocol broker and PostgreSQL, checked against git; and a processor killed with SIGKILL
in the middle of its work, started again, with results still exact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixtures.broker import free_port
from tests.fixtures.gitrepo import git_commits
from tests.oracle import assert_api_matches_git, wait_ingested

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, role: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "metre", role, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, (
                f"{name} exited with {proc.returncode}:\n{(self.logs / f'{name}.log').read_text()}"
            )

    def stop_all(self) -> dict[str, int]:
        codes = {}
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.procs.clear()
        return codes


@asynccontextmanager
async def cluster(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[Cluster, httpx.AsyncClient]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(
        METRE_DATABASE_URL=db_dsn,
        METRE_KAFKA_BOOTSTRAP=kafka_bootstrap,
        METRE_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}",
        METRE_PARTITIONS="4",
        METRE_BATCH_SIZE="50",
        METRE_CONSUMER_SESSION_TIMEOUT_MS="3000",
        METRE_ALLOW_LOCAL_PATHS="true",
        METRE_POLL_INTERVAL="2",
        METRE_DATA_DIR=str(tmp_path / "data"),
        METRE_LOG_LEVEL="INFO",
        METRE_RATE_LIMIT="0",  # the oracle reads every commit, 16 requests at a time
    )
    c = Cluster(env, tmp_path)
    port = free_port()
    c.start("api", "api", "--port", str(port))
    c.start("poller", "poller")
    c.start("processor-1", "processor")
    c.start("processor-2", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                c.alive()
                await asyncio.sleep(0.1)
            yield c, client
            c.alive()
    finally:
        codes = c.stop_all()
        assert all(code == 0 for code in codes.values()), codes


async def test_distributed_roles_give_exact_results(
    tmp_path: Path,
    db_dsn: str,
    kafka_bootstrap: str,
    awkward_repo: Path,
    history_factory: Callable[..., Path],
) -> None:
    big = history_factory(commits=1500, seed=11)
    async with cluster(tmp_path, db_dsn, kafka_bootstrap) as (_, api):
        ids = []
        for repo in (awkward_repo, big):
            r = await api.post("/api/v1/repos", json={"url": str(repo)})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for repo_id, repo in zip(ids, (awkward_repo, big), strict=True):
            await wait_ingested(api, repo_id, len(git_commits(repo)), timeout=300)
            await assert_api_matches_git(api, repo_id, repo)


async def test_processor_killed_mid_batch_loses_and_double_counts_nothing(
    tmp_path: Path,
    db_dsn: str,
    kafka_bootstrap: str,
    history_factory: Callable[..., Path],
) -> None:
    big = history_factory(commits=3000, seed=5)
    async with cluster(tmp_path, db_dsn, kafka_bootstrap) as (c, api):
        r = await api.post("/api/v1/repos", json={"url": str(big)})
        repo_id = r.json()["id"]
        kills = 0
        # Kill a processor while commits are flowing in (batches of 50: it dies mid-stream,
        # between or inside transactions), start it again, and do it once more.
        for threshold in (300, 1500):
            for _ in range(600):
                info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
                if info["commits"] >= threshold:
                    break
                await asyncio.sleep(0.05)
            assert info["commits"] < 3000, "ingestion finished before the kill: make it longer"
            victim = f"processor-{1 + kills % 2}"
            c.kill(victim)
            kills += 1
            c.start(victim, "processor")
        assert kills == 2
        await wait_ingested(api, repo_id, 3000, timeout=300)
        await assert_api_matches_git(api, repo_id, big)
