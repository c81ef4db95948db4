"""The poller over the real PostgreSQL registry and the in-process bus, on repositories built
with the git CLI: what it publishes, when it stores its position, and how it fails."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metre.contracts.bus import BusError, InMemoryBus, Message
from metre.contracts.events import decode
from metre.contracts.retry import Backoff
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits, git_numstat

pytestmark = pytest.mark.integration

TOPIC = "metre.commits"


async def published(bus: InMemoryBus) -> list[str]:
    consumer = bus.consumer([TOPIC], f"reader-{id(object())}")
    await consumer.start()
    ids: list[str] = []
    while batch := await consumer.fetch(10_000, 0.05):
        ids += [decode(r.value).event_id for r in batch]
    await consumer.stop()
    return ids


async def make_poller(store: PgStore, tmp_path: Path, bus: InMemoryBus | None = None) -> Poller:
    bus = bus or InMemoryBus(partitions=4)
    await bus.start()
    await bus.ensure_topics([TOPIC])
    return Poller(bus, store, PollerConfig(mirrors_dir=tmp_path / "mirrors", topic=TOPIC, chunk=7))


async def poll_due(poller: Poller, store: PgStore) -> int:
    n = 0
    while (row := await store.claim_due_repo(60)) is not None:
        await poller.poll(row)
        n += 1
    return n


async def test_publishes_every_commit_once_then_only_new_ones(
    store: PgStore, tmp_path: Path, awkward_repo: Path
) -> None:
    poller = await make_poller(store, tmp_path)
    bus = poller.bus
    assert isinstance(bus, InMemoryBus)
    row = await store.add_repo(str(awkward_repo), None)
    assert await poll_due(poller, store) == 1
    ids = await published(bus)
    commits = git_commits(awkward_repo)
    assert sorted(ids) == sorted(f"{row.id}:{sha}" for sha in commits)
    polled = await store.get_repo(row.id)
    assert polled is not None
    assert polled.state == "idle"
    assert polled.head == next(iter(commits))
    assert (polled.progress_done, polled.progress_total) == (len(commits), len(commits))

    # Nothing new: nothing published.
    await store.request_poll(row.id)
    assert await poll_due(poller, store) == 1
    assert len(await published(bus)) == len(commits)


async def test_new_commits_and_their_files(store: PgStore, tmp_path: Path) -> None:
    live = GitRepoBuilder(tmp_path / "live")
    live.write("a", b"1\n2\n3\n")
    live.commit("one")
    poller = await make_poller(store, tmp_path)
    assert isinstance(poller.bus, InMemoryBus)
    row = await store.add_repo(str(live.path), None)
    await poll_due(poller, store)
    live.write("a", b"1\nzwei\n3\n4\n")
    live.write("b", b"x")
    second = live.commit("two")
    await store.request_poll(row.id)
    await poll_due(poller, store)
    consumer = poller.bus.consumer([TOPIC], "g")
    await consumer.start()
    events = [decode(r.value) for r in await consumer.fetch(100, 0.1)]
    await consumer.stop()
    assert [e.sha for e in events][-1] == second
    got = {(f.path, f.added, f.removed) for f in events[-1].files}
    want = {(p.decode(), a, r) for p, a, r in git_numstat(live.path)[second]}
    assert got == want == {("a", 2, 1), ("b", 1, 0)}


class FailingBus(InMemoryBus):
    """A bus whose broker never acknowledges (a unit-level fault, not a stand-in for Kafka)."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        raise BusError("broker unavailable", retriable=True)


async def test_position_is_stored_only_after_the_bus_acknowledged(
    store: PgStore, tmp_path: Path, awkward_repo: Path
) -> None:
    failing = await make_poller(store, tmp_path, FailingBus(partitions=2))
    row = await store.add_repo(str(awkward_repo), None)
    await poll_due(failing, store)
    after = await store.get_repo(row.id)
    assert after is not None
    assert after.state == "failed"
    assert after.head is None
    assert "did not acknowledge" in (after.error or "")

    working = await make_poller(store, tmp_path)
    assert isinstance(working.bus, InMemoryBus)
    await store.request_poll(row.id)
    await poll_due(working, store)
    assert len(await published(working.bus)) == len(git_commits(awkward_repo))
    healed = await store.get_repo(row.id)
    assert healed is not None
    assert (healed.state, healed.error, healed.failures) == ("idle", None, 0)


async def test_a_broken_repository_fails_alone_and_is_retried_with_backoff(
    store: PgStore, tmp_path: Path, awkward_repo: Path
) -> None:
    doomed = GitRepoBuilder(tmp_path / "doomed")
    doomed.write("f", b"x\n")
    doomed.commit("c")
    poller = await make_poller(store, tmp_path)
    assert isinstance(poller.bus, InMemoryBus)
    bad = await store.add_repo(str(doomed.path), None)
    shutil.rmtree(doomed.path)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "HEAD").write_text("garbage")
    worse = await store.add_repo(str(corrupt), None)
    good = await store.add_repo(str(awkward_repo), None)

    before = datetime.now(UTC)
    assert await poll_due(poller, store) == 3
    for repo_id in (bad.id, worse.id):
        r = await store.get_repo(repo_id)
        assert r is not None
        assert r.state == "failed"
        assert r.error
        assert "Traceback" not in r.error
        assert r.failures == 1
        assert r.next_poll_at > before  # not due again at once: backed off
    ok = await store.get_repo(good.id)
    assert ok is not None
    assert ok.state == "idle"
    assert len(await published(poller.bus)) == len(git_commits(awkward_repo))


def test_repository_retry_delay_is_capped_exponential_with_jitter() -> None:
    import random

    rng = random.Random(1)
    delays = [Backoff(5.0, 900.0).delay(n, rng) for n in range(12)]
    for n, d in enumerate(delays):
        ceiling = min(900.0, 5.0 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 900.0


async def test_run_stops_promptly(store: PgStore, tmp_path: Path) -> None:
    poller = await make_poller(store, tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 5)
