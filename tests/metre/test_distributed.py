"""Distributed mode end to end: separate poller, processor and API processes over the real
Kafka-protocol broker and PostgreSQL, checked against git; and a processor killed with SIGKILL
in the middle of its work, started again, with results still exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from testkit.broker import free_port
from testkit.oracle import assert_api_matches_git, wait_ingested
from testkit.roles import Roles, role_env, wait_ready
from tests.fixtures.gitrepo import git_commits

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@asynccontextmanager
async def cluster(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[Roles, httpx.AsyncClient]]:
    c = Roles(role_env(tmp_path / "data", db_dsn, kafka_bootstrap), tmp_path)
    port = free_port()
    c.migrate()
    c.start("api", "api", "--port", str(port))
    c.start("poller", "poller")
    c.start("processor-1", "processor")
    c.start("processor-2", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await wait_ready(client, c)
            yield c, client
            c.assert_alive()
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
