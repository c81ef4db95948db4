"""Releases and lead time end to end over the real broker and PostgreSQL: `metre poller`,
`metre processor` and `metre api` as separate processes (release tags from the default
METRE_RELEASE_TAGS), checked against the git CLI after the first ingest, after a tag moved and
another was deleted, and after a force-push of the branch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from testkit.broker import free_port
from testkit.oracle import wait_ingested
from testkit.roles import Roles, role_env, wait_ready
from tests.api.test_releases import build, check

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def settled(client: httpx.AsyncClient, repo_id: int, path: Path, timeout: float) -> None:
    """Wait until the served numbers equal git's (the roles poll on their own), then check
    once more; the last difference is raised if they never do."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await check(client, repo_id, path)
            return
        except AssertionError:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.3)


async def test_releases_over_kafka_equal_git(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str
) -> None:
    b = build(tmp_path / "repo")
    roles = Roles(role_env(tmp_path / "data", db_dsn, kafka_bootstrap), tmp_path)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles, timeout=90)
            repo = (await api.post("/api/v1/repos", json={"url": str(b.path)})).json()
            commits = len(b.git("rev-list", "main").split())
            await wait_ingested(api, repo["id"], commits, timeout=120)
            await settled(api, repo["id"], b.path, 60)
            first = (await api.get(f"/api/v1/repos/{repo['id']}/metrics/releases")).json()
            assert len(first["releases"]) == 7

            b.git("tag", "-f", "v0.3", "HEAD~2")
            b.git("tag", "-d", "v0.15")
            await settled(api, repo["id"], b.path, 60)

            b.git("reset", "-q", "--hard", "v0.2")
            b.write("e.txt", b"e\n")
            b.commit("c7", date="2024-03-27T10:00:00+0000")
            b.git("tag", "v1.1")
            await settled(api, repo["id"], b.path, 60)
            last = (await api.get(f"/api/v1/repos/{repo['id']}/metrics/releases")).json()
            assert [r["tag"] for r in last["releases"]][-1] == "v1.1"
    finally:
        roles.stop_all()
