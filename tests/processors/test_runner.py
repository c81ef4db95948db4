"""The processor loop over InMemoryBus and the real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from metre.contracts.bus import (
    BusError,
    CommitFailed,
    InMemoryBus,
    InMemoryConsumer,
    Message,
    Record,
)
from metre.contracts.events import CommitEvent, encode, partition_key
from metre.contracts.retry import Backoff, is_transient
from metre.processors.metrics import total
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from tests.processors.factories import event, person
from tests.processors.test_store import expected_metrics, table_state

pytestmark = pytest.mark.integration

TOPIC, DLQ, GROUP = "commits", "commits.dlq", "processors"


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    b = InMemoryBus(partitions=4)
    await b.start()
    await b.ensure_topics([TOPIC, DLQ])
    yield b
    await b.stop()


def messages(events: Sequence[CommitEvent]) -> list[Message]:
    return [Message(partition_key(e.repo_id), encode(e)) for e in events]


async def repos(store: PgStore, n: int) -> list[int]:
    return [(await store.add_repo(f"https://example.org/{i}.git", None)).id for i in range(n)]


def some_events(repo_ids: list[int], n: int, seed: int = 1) -> list[CommitEvent]:
    rnd = random.Random(seed)
    return [
        event(i, repo_id=rnd.choice(repo_ids),
              author=person(rnd.choice("AB"), rnd.choice("ab") + "@x",
                            f"2024-06-{rnd.randint(1, 20):02}T12:00:00+02:00"))
        for i in range(n)
    ]  # fmt: skip


async def drained(bus: InMemoryBus, timeout: float = 20) -> None:
    """Wait until the group committed everything published to TOPIC."""
    async with asyncio.timeout(timeout):
        while bus.committed(GROUP, TOPIC) != {p: o for p, o in bus.end_offsets(TOPIC).items() if o}:
            await asyncio.sleep(0.02)


def processor(bus: InMemoryBus, store: PgStore, batch_size: int = 50) -> Processor:
    return Processor(bus, store, TOPIC, GROUP, batch_size, DLQ, fetch_timeout=0.05)


async def test_applies_every_event_once_and_commits(bus: InMemoryBus, store: PgStore) -> None:
    ids = await repos(store, 3)
    events = some_events(ids, 300)
    await bus.publish(TOPIC, messages(events))
    await bus.publish(TOPIC, messages(events[:100]))  # redelivered by a republish
    p = processor(bus, store)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    await drained(bus)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (p.applied, p.duplicates, p.poison) == (300, 100, 0)
    state = await table_state(store)
    assert len(state["commits"]) == 300
    assert {k: state[k] for k in ("activity_daily", "author_totals")} == expected_metrics(events)


async def test_poison_goes_to_the_dlq_and_the_partition_continues(
    bus: InMemoryBus, store: PgStore
) -> None:
    (r,) = await repos(store, 1)
    key = partition_key(r)
    good = [event(i, repo_id=r) for i in range(6)]
    nul = dataclasses.replace(event(100, repo_id=r), summary="nul \x00 inside")
    batch = [
        Message(key, encode(good[0])),
        Message(key, b"not json at all"),
        Message(key, encode(good[1])),
        Message(key, b'{"v": 99, "type": "commit"}'),
        Message(key, encode(nul)),  # valid JSON event, refused by PostgreSQL text
        *messages(good[2:]),
    ]
    await bus.publish(TOPIC, batch)
    p = processor(bus, store, batch_size=4)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    await drained(bus)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (p.applied, p.duplicates, p.poison, p.handled) == (6, 0, 3, 9)
    assert (await store.get_repo(r)).commits == 6  # type: ignore[union-attr]

    dlq = bus.consumer([DLQ], "inspect")
    await dlq.start()
    dead = await dlq.fetch(10, 0.5)
    await dlq.stop()
    assert [d.value for d in dead] == [
        b"not json at all",
        b'{"v": 99, "type": "commit"}',
        encode(nul),
    ]
    partition = next(iter(bus.end_offsets(TOPIC).items()))
    headers = [dict(d.headers) for d in dead]
    assert [h["offset"] for h in headers] == [b"1", b"3", b"4"]
    assert all(h["topic"] == TOPIC.encode() for h in headers)
    assert {h["partition"] for h in headers} == {
        str(p).encode() for p, o in bus.end_offsets(TOPIC).items() if o
    }
    assert b"not JSON" in headers[0]["error"]
    assert b"schema version" in headers[1]["error"]
    assert b"refused by the database" in headers[2]["error"]
    assert partition  # the topic has partitions


async def test_killed_processors_lose_and_double_count_nothing(
    bus: InMemoryBus, store: PgStore
) -> None:
    """Processors cancelled at random instants (mid-transaction too), replaced by others."""
    ids = await repos(store, 4)
    events = some_events(ids, 600, seed=5)
    await bus.publish(TOPIC, messages(events))
    rnd = random.Random(11)
    stop = asyncio.Event()
    for _ in range(8):
        tasks = [asyncio.create_task(processor(bus, store, 37).run(stop)) for _ in range(2)]
        await asyncio.sleep(rnd.uniform(0.0, 0.15))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    final = processor(bus, store, 37)
    task = asyncio.create_task(final.run(stop))
    await drained(bus)
    stop.set()
    await asyncio.wait_for(task, 5)
    state = await table_state(store)
    assert len(state["commits"]) == 600
    assert {k: state[k] for k in ("activity_daily", "author_totals")} == expected_metrics(events)


async def test_database_connections_dropped_mid_run_are_retried(
    bus: InMemoryBus, store: PgStore
) -> None:
    ids = await repos(store, 2)
    events = some_events(ids, 400, seed=9)
    p = processor(bus, store, 10)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    admin = await asyncpg.connect(store._dsn)
    try:
        for chunk in range(0, 400, 50):
            await bus.publish(TOPIC, messages(events[chunk : chunk + 50]))
            await asyncio.sleep(0.03)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        await drained(bus)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await admin.close()
    assert p.retries > 0
    # A connection cut during COMMIT leaves the client in doubt: the server may have committed.
    # The retry then finds those events already applied and counts them as duplicates, so the
    # exact effect is asserted on the tables, not on the `applied` counter.
    assert p.poison == 0
    assert p.applied <= 400 <= p.applied + p.duplicates
    state = await table_state(store)
    assert len(state["commits"]) == 400
    assert {k: state[k] for k in ("activity_daily", "author_totals")} == expected_metrics(events)


class _FlakyConsumer:
    """Fails its first commits: transiently, then with CommitFailed."""

    def __init__(self, inner: InMemoryConsumer, failures: list[BaseException]) -> None:
        self.inner = inner
        self.failures = failures

    async def start(self) -> None:
        await self.inner.start()

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        return await self.inner.fetch(max_records, timeout)

    async def commit(self, records: Sequence[Record]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await self.inner.commit(records)

    def assignment(self) -> set[tuple[str, int]]:
        return self.inner.assignment()

    async def stop(self) -> None:
        await self.inner.stop()


class _FlakyBus(InMemoryBus):
    def __init__(self, failures: list[BaseException]) -> None:
        super().__init__(partitions=1)
        self.failures = failures

    def consumer(self, topics: Sequence[str], group: str) -> _FlakyConsumer:  # type: ignore[override]
        return _FlakyConsumer(super().consumer(topics, group), self.failures)


async def test_commit_errors_are_retried_or_tolerated(store: PgStore) -> None:
    bus = _FlakyBus([BusError("broker away"), BusError("again"), CommitFailed("rebalanced")])
    await bus.start()
    await bus.ensure_topics([TOPIC, DLQ])
    ids = await repos(store, 1)
    events = some_events(ids, 30)
    await bus.publish(TOPIC, messages(events))
    p = Processor(bus, store, TOPIC, GROUP, 10, DLQ, fetch_timeout=0.05, backoff_base=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    await drained(bus)
    stop.set()
    await asyncio.wait_for(task, 5)
    await bus.stop()
    assert (p.retries, p.commit_failures, p.applied) == (2, 1, 30)


def test_transient_errors_and_backoff() -> None:
    assert is_transient(BusError("x"))
    assert not is_transient(BusError("x", retriable=False))
    assert not is_transient(CommitFailed("x"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(asyncpg.exceptions.DeadlockDetectedError("x"))
    assert not is_transient(asyncpg.exceptions.UndefinedTableError("x"))
    assert not is_transient(ValueError("x"))
    rnd = random.Random(0)
    delays = [Backoff(0.1, 2.0).delay(a, rnd) for a in range(12)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[:3]) <= 0.4
    assert min(delays[6:]) >= 1.0


def test_counts_are_those_of_the_pure_total() -> None:
    """Guard the oracle the tests above lean on."""
    events = some_events([1, 2], 50)
    assert sum(d.add["commits"] for d in total(events) if d.table == "activity_daily") == 50
