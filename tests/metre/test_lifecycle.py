"""Pause, resume, capped backoff and giving up, over the real PostgreSQL registry: the poller
`metre` builds from its settings, the HTTP API, and repositories built with the git CLI."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from metre.api.app import create_app
from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller
from metre.processors.store import PgStore
from metre.settings import Settings
from metre.wiring import commits_topic, make_poller
from tests.fixtures.gitrepo import GitRepoBuilder

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    b = InMemoryBus(partitions=2)
    await b.start()
    yield b
    await b.stop()


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", allow_local_paths=True, **kw)  # type: ignore[arg-type]


async def poll_due(poller: Poller, store: PgStore) -> list[int]:
    polled = []
    while (row := await store.claim_due_repo(60)) is not None:
        await poller.poll(row)
        polled.append(row.id)
    return polled


async def test_a_paused_repository_is_not_polled_keeps_its_metrics_and_resumes_at_once(
    store: PgStore, bus: InMemoryBus, tmp_path: Path
) -> None:
    s = settings(tmp_path)
    await bus.ensure_topics([commits_topic(s)])
    poller = make_poller(s, bus, store)
    src = GitRepoBuilder(tmp_path / "src")
    src.write("a", b"1\n")
    first = src.commit("one")
    row = await store.add_repo(str(src.path), None)
    assert await poll_due(poller, store) == [row.id]
    transport = httpx.ASGITransport(app=create_app(s, store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        r = await api.post(f"/api/v1/repos/{row.id}/pause")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "paused"
        assert (await api.post("/api/v1/repos/999/pause")).status_code == 404

        src.write("a", b"1\n2\n")
        second = src.commit("two")
        # Neither a poll request nor the schedule makes a paused repository due.
        r = await api.post(f"/api/v1/repos/{row.id}/poll")
        assert r.status_code == 409
        assert "resume" in r.json()["error"]["message"]
        await store.request_poll(row.id)
        assert await store.claim_due_repo(60) is None
        paused = (await api.get(f"/api/v1/repos/{row.id}")).json()
        assert (paused["state"], paused["head"]) == ("paused", first)

        r = await api.post(f"/api/v1/repos/{row.id}/resume")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "pending"
        assert await poll_due(poller, store) == [row.id]
        resumed = (await api.get(f"/api/v1/repos/{row.id}")).json()
        assert (resumed["state"], resumed["head"]) == ("idle", second)
        assert (await api.post("/api/v1/repos/999/resume")).status_code == 404


async def test_paused_during_a_poll_stays_paused(
    store: PgStore, bus: InMemoryBus, tmp_path: Path
) -> None:
    s = settings(tmp_path)
    await bus.ensure_topics([commits_topic(s)])
    poller = make_poller(s, bus, store)
    src = GitRepoBuilder(tmp_path / "src")
    src.write("a", b"1\n")
    head = src.commit("one")
    row = await store.add_repo(str(src.path), None)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    assert (await store.pause_repo(row.id)) is not None
    await poller.poll(claimed)  # the poll under way finishes...
    after = await store.get_repo(row.id)
    assert after is not None
    assert (after.state, after.head) == ("paused", head)  # ...and the repository stays paused
    await store.request_poll(row.id)
    assert await store.claim_due_repo(60) is None


async def test_failures_back_off_to_the_cap_then_give_up_and_resume_revives(
    store: PgStore, bus: InMemoryBus, tmp_path: Path
) -> None:
    s = settings(tmp_path, retry_cap=60.0, give_up_after=3600.0)
    await bus.ensure_topics([commits_topic(s)])
    poller = make_poller(s, bus, store)
    doomed = GitRepoBuilder(tmp_path / "doomed")
    doomed.write("f", b"x\n")
    doomed.commit("c")
    row = await store.add_repo(str(doomed.path), None)
    shutil.rmtree(doomed.path)

    waits = []
    for _ in range(8):
        await store.request_poll(row.id)
        assert await poll_due(poller, store) == [row.id]
        r = await store.get_repo(row.id)
        assert r is not None
        assert r.state == "failed"
        assert r.last_polled_at is not None
        waits.append((r.next_poll_at - r.last_polled_at).total_seconds())
    # 5 s doubling, each drawn from the upper half of its ceiling, capped at METRE_RETRY_CAP.
    for n, wait in enumerate(waits):
        ceiling = min(60.0, 5.0 * 2**n)
        assert ceiling / 2 - 0.01 <= wait <= ceiling + 0.01, (n, waits)
    assert max(waits[4:]) <= 60.01

    # Failing for longer than METRE_GIVE_UP_AFTER: the next failure gives up.
    async with store.pool.acquire() as con:
        await con.execute(
            "UPDATE repos SET failing_since = now() - interval '2 hours' WHERE id = $1", row.id
        )
    await store.request_poll(row.id)
    assert await poll_due(poller, store) == [row.id]
    given_up = await store.get_repo(row.id)
    assert given_up is not None
    assert given_up.state == "abandoned"
    assert given_up.error  # the reason is kept
    await store.request_poll(row.id)
    assert await store.claim_due_repo(60) is None  # never polled again...

    revived = await store.resume_repo(row.id)  # ...until resumed
    assert revived is not None
    assert (revived.state, revived.failures, revived.failing_since) == ("pending", 0, None)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    assert claimed.id == row.id


async def test_without_give_up_a_failing_repository_is_retried_forever(
    store: PgStore, bus: InMemoryBus, tmp_path: Path
) -> None:
    s = settings(tmp_path)
    assert s.give_up_after is None
    await bus.ensure_topics([commits_topic(s)])
    poller = make_poller(s, bus, store)
    row = await store.add_repo(str(tmp_path / "missing"), None)
    await poll_due(poller, store)
    async with store.pool.acquire() as con:
        await con.execute(
            "UPDATE repos SET failing_since = now() - interval '100 days' WHERE id = $1", row.id
        )
    await store.request_poll(row.id)
    assert await poll_due(poller, store) == [row.id]
    r = await store.get_repo(row.id)
    assert r is not None
    assert r.state == "failed"
