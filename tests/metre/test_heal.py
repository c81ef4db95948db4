"""A broker that loses everything (restarted empty) under running distributed roles, over the
real Kafka-protocol broker and PostgreSQL: the loss is detected, reported and healed by a
targeted reconcile with nobody running `metre reconcile` (its interval here is an hour)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from testkit.broker import Broker, free_port
from testkit.oracle import assert_api_matches_git, wait_ingested
from testkit.roles import Roles, role_env, wait_ready
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits, run_git

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _until(what: str, check: Callable[[], object], roles: Roles, timeout: float) -> None:
    """Until `check()` is truthy; a generous bound only so a broken build ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        roles.assert_alive()
        assert loop.time() < deadline, what
        await asyncio.sleep(0.2)


async def _eventually(
    what: str, check: Callable[[], Awaitable[bool]], roles: Roles, timeout: float = 120
) -> None:
    """Until `await check()` is true; the bound only ends a broken build."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        roles.assert_alive()
        assert loop.time() < deadline, what
        await asyncio.sleep(0.2)


async def _marks(dsn: str, topic: str) -> int:
    con = await asyncpg.connect(dsn)
    try:
        n: int = await con.fetchval(
            "SELECT count(*) FROM bus_marks WHERE topic = $1 AND produced >= 0", topic
        )
        return n
    finally:
        await con.close()


async def _has_marks(dsn: str, topic: str) -> bool:
    return await _marks(dsn, topic) > 0


async def test_broker_restarted_empty_heals_without_anyone_reconciling(
    tmp_path: Path,
    db_dsn: str,
    running_kafka_broker: Broker,
    history_factory: Callable[..., Path],
) -> None:
    """The worst case: events the poller published (and stored its head for) are lost with
    the broker before any processor read them. Nothing but the heal can bring them back."""
    src = tmp_path / "src"
    run_git(tmp_path, "clone", "-q", str(history_factory(120, 7)), str(src))
    env = role_env(
        tmp_path / "data",
        db_dsn,
        running_kafka_broker.bootstrap,
        METRE_RECONCILE_INTERVAL="3600",
        METRE_POLL_INTERVAL="1",
    )
    topic = env["METRE_TOPIC_PREFIX"] + ".commits"
    roles = Roles(env, tmp_path)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles)
            r = await api.post("/api/v1/repos", json={"url": str(src)})
            assert r.status_code == 201, r.text
            repo_id = r.json()["id"]
            await wait_ingested(api, repo_id, len(git_commits(src)), timeout=180)
            assert roles.terminate("processor") == 0

            b = GitRepoBuilder(src)
            for n in range(3):
                b.write(f"before-the-loss-{n}.txt", b"one\ntwo\n" * (n + 1))
                b.commit(f"published, never applied {n}")
            head = git_commits(src)
            published = False
            for _ in range(300):  # the poller stores the new head once the broker has it
                info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
                published = info["head"] == next(iter(head))
                if published and await _marks(db_dsn, topic):
                    break
                await asyncio.sleep(0.2)
            assert published

            running_kafka_broker.restart()  # memory storage: every topic, offset, group gone
            roles.start("processor", "processor")
            b.write("after-the-loss.txt", b"three\n")
            b.commit("a commit pushed after the broker lost its data")

            await wait_ingested(api, repo_id, len(git_commits(src)), timeout=120)
            await assert_api_matches_git(api, repo_id, src)
            body = (await api.get("/api/v1/pipeline")).json()
            loss = body["data_loss"]
            assert loss["count"] >= 1, body
            assert loss["last"]["kind"] in {"topic_missing", "truncated"}, body
            assert repo_id in loss["last"]["repo_ids"], body
            await _until(
                "the loss is marked healed",
                lambda: "healed:" in roles.log("poller"),
                roles,
                60,
            )
            body = (await api.get("/api/v1/pipeline")).json()
            assert body["data_loss"]["unhealed"] == 0, body

            async def fresh() -> bool:  # the freshness check clears it at its next pass
                info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
                return info["lagging"] is False and info["lagging_reason"] is None

            await _eventually("the repository is not lagging", fresh, roles)
            assert "data loss on the bus" in roles.log("poller") + roles.log("processor")
    finally:
        codes = roles.stop_all()
        running_kafka_broker.start()
    assert all(code == 0 for code in codes.values()), codes


async def test_a_broker_with_another_cluster_id_is_a_loss_of_every_partition(
    tmp_path: Path,
    db_dsn: str,
    running_kafka_broker: Broker,
    history_factory: Callable[..., Path],
) -> None:
    """The processor keeps running: the loss is recorded once (whichever role saw it first),
    as `cluster_changed`, and the result still equals git."""
    src = history_factory(40, 9)
    env = role_env(tmp_path / "data", db_dsn, running_kafka_broker.bootstrap)
    roles = Roles(env, tmp_path)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles)
            r = await api.post("/api/v1/repos", json={"url": str(src)})
            repo_id = r.json()["id"]
            await wait_ingested(api, repo_id, len(git_commits(src)), timeout=180)
            topic = env["METRE_TOPIC_PREFIX"] + ".commits"
            await _eventually("marks", lambda: _has_marks(db_dsn, topic), roles)
            running_kafka_broker.restart(cluster_id="another_cluster")
            kinds: list[str] = []

            async def recorded() -> bool:
                body = (await api.get("/api/v1/pipeline")).json()["data_loss"]
                kinds[:] = [] if body["last"] is None else [body["last"]["kind"]]
                return bool(kinds)

            await _eventually("a loss is recorded", recorded, roles)
            assert kinds == ["cluster_changed"]
            body = (await api.get("/api/v1/pipeline")).json()
            assert body["data_loss"]["count"] == 1, body
            await assert_api_matches_git(api, repo_id, src)
    finally:
        codes = roles.stop_all()
        running_kafka_broker.cluster_id = None
        running_kafka_broker.restart()
    assert all(code == 0 for code in codes.values()), codes
