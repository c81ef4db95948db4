"""Retraction in the store against the real PostgreSQL: after any interleaving of adds and
retractions, every table equals a fresh ingest of the commits that remain."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from metre.contracts.events import ChangeType, CommitEvent, FileChange, Person, RetractEvent
from metre.processors.store import PgStore
from testkit.dump import differences, dump
from testkit.postgres import drop_database
from tests.fixtures.postgres import MakeDatabase
from tests.processors.factories import sha

pytestmark = pytest.mark.integration

_PEOPLE = [("Ada", "ada@x.org"), ("ada", "ada@x.org"), ("Bob", "bob@y.org"), ("Zoë", "zoe@z.org")]
_CHANGES: tuple[ChangeType, ...] = ("A", "D", "M", "T")
_PATHS = ["a.py", "b/c.c", "d.bin", "e.md", "f"]
_BASE = datetime(2024, 1, 1, tzinfo=UTC)


def random_event(rng: random.Random, n: int, repo_id: int = 1) -> CommitEvent:
    """Commits that collide on days, authors, instants (ties in the latest name) and paths."""
    name, email = rng.choice(_PEOPLE)
    offset = timezone(timedelta(minutes=rng.choice((-720, 0, 330, 840))))
    when = (_BASE + timedelta(hours=rng.randrange(0, 24 * 10, 6))).astimezone(offset)
    merge = rng.random() < 0.15
    files = tuple(
        FileChange(
            p, rng.randrange(20), rng.randrange(20), p.endswith(".bin"), rng.choice(_CHANGES)
        )
        for p in rng.sample(_PATHS, rng.randrange(0, 4))
    )
    who = Person(name, email, when)
    return CommitEvent(
        repo_id=repo_id,
        sha=sha(n),
        parents=(sha(f"p{n}"), sha(f"q{n}")) if merge else (sha(f"p{n}"),),
        author=who,
        committer=who,
        summary=f"commit {n}",
        files=()
        if merge
        else tuple(f if not f.binary else FileChange(f.path, 0, 0, True, f.change) for f in files),
    )


@pytest.fixture
async def fresh(make_database: MakeDatabase) -> AsyncIterator[PgStore]:
    """A second fresh database: the reference ingest."""
    dsn = await make_database()
    s = await PgStore.connect(dsn, min_size=1, max_size=2)
    try:
        yield s
    finally:
        await s.close()
        await drop_database(dsn)


async def assert_same(store: PgStore, fresh: PgStore, remaining: list[CommitEvent]) -> None:
    await fresh.add_repo("https://example.org/a.git", None)
    await fresh.apply(remaining)
    got, want = await dump(store._dsn), await dump(fresh._dsn)
    assert differences(got, want) == {}
    assert got == want


@pytest.mark.parametrize("seed", range(4))
async def test_any_interleaving_equals_a_fresh_ingest(
    store: PgStore, fresh: PgStore, seed: int
) -> None:
    rng = random.Random(seed)
    await store.add_repo("https://example.org/a.git", None)
    events = {n: random_event(rng, n) for n in range(60)}
    present: set[int] = set()
    for _ in range(12):  # batches mixing adds, retractions and repeats, applied in order
        batch: list[CommitEvent | RetractEvent] = []
        for _ in range(rng.randrange(1, 25)):
            n = rng.randrange(60)
            if rng.random() < 0.4:
                batch.append(RetractEvent(1, events[n].sha))
            else:
                batch.append(events[n])
        effective = 0
        for e in batch:  # what the batch should do, in order
            n = next(k for k, v in events.items() if v.sha == e.sha)
            if isinstance(e, RetractEvent) and n in present:
                present.discard(n)
                effective += 1
            elif isinstance(e, CommitEvent) and n not in present:
                present.add(n)
                effective += 1
        assert await store.apply(batch) == effective
    assert present  # the run retracted some commits and kept others
    await assert_same(store, fresh, [events[n] for n in sorted(present)])


async def test_add_retract_add_in_one_batch(store: PgStore, fresh: PgStore) -> None:
    await store.add_repo("https://example.org/a.git", None)
    rng = random.Random(9)
    a, b = random_event(rng, 1), random_event(rng, 2)
    assert await store.apply([a, b, RetractEvent(1, a.sha), a, RetractEvent(1, b.sha)]) == 5
    await assert_same(store, fresh, [a])


async def test_retracting_everything_leaves_no_rows(store: PgStore, fresh: PgStore) -> None:
    await store.add_repo("https://example.org/a.git", None)
    rng = random.Random(3)
    events = [random_event(rng, n) for n in range(30)]
    await store.apply(events)
    assert await store.apply([RetractEvent(1, e.sha) for e in events]) == 30
    assert await store.apply([RetractEvent(1, e.sha) for e in events]) == 0  # idempotent
    await assert_same(store, fresh, [])
    assert all(not rows for rows in (await dump(store._dsn)).values())


async def test_retracting_the_latest_commit_restores_name_and_times(store: PgStore) -> None:
    await store.add_repo("https://example.org/a.git", None)
    t = datetime(2024, 5, 1, 12, tzinfo=UTC)
    old = CommitEvent(1, sha(1), (), Person("Old Name", "p@x.org", t), Person("c", "c@x", t), "1")
    new = CommitEvent(
        1, sha(2), (sha(1),), Person("New Name", "p@x.org", t + timedelta(days=3)),
        Person("c", "c@x", t), "2",
    )  # fmt: skip
    await store.apply([old, new])
    assert [a["name"] for a in await store.authors(1)] == ["New Name"]
    await store.apply([RetractEvent(1, new.sha)])
    (a,) = await store.authors(1)
    assert (a["name"], a["commits"]) == ("Old Name", 1)
    assert a["first_commit_at"] == a["last_commit_at"] == t.isoformat()
