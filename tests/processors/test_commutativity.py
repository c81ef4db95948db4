"""Metric updates commute: the same events in shuffled orders, split into different batches,
with duplicated batches, give identical rows in every metric table (real PostgreSQL)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import asyncpg
import pytest

from metre.contracts.events import BlobDelta, CommitEvent, FileChange, MergeFile
from metre.processors.metrics import TABLES
from metre.processors.store import PgStore
from testkit.postgres import drop_database
from tests.fixtures.postgres import MakeDatabase
from tests.processors.factories import event, person

pytestmark = pytest.mark.integration

PATHS = ("src/a.py", "b.c", "docs/x.md", "img.png", "Makefile", "noext", "caf\\xe9.rs")


def blob(rnd: random.Random) -> BlobDelta | None:
    """Blob measures, or (one time in four) none, as in events of an earlier poller."""
    if rnd.random() < 0.25:
        return None
    size, binary, text = rnd.randint(-900, 900), rnd.randint(-1, 1), rnd.randint(-900, 900)
    code = None if rnd.random() < 0.25 else rnd.randint(-90, 90)  # before lines of code
    return BlobDelta(size, binary, text, code)


def without_code(events: list[CommitEvent]) -> list[CommitEvent]:
    """The events as a poller before lines of code (but after the other measures) wrote them."""

    def strip(b: BlobDelta | None) -> BlobDelta | None:
        return None if b is None else dataclasses.replace(b, code=None)

    return [
        dataclasses.replace(
            e,
            files=tuple(dataclasses.replace(f, blob=strip(f.blob)) for f in e.files),
            merge_files=tuple(dataclasses.replace(m, blob=strip(m.blob)) for m in e.merge_files),
        )
        for e in events
    ]


def without_blobs(events: list[CommitEvent]) -> list[CommitEvent]:
    """The events as a poller before blob measures wrote them."""
    return [
        dataclasses.replace(
            e,
            files=tuple(dataclasses.replace(f, blob=None) for f in e.files),
            merge_files=tuple(dataclasses.replace(m, blob=None) for m in e.merge_files),
        )
        for e in events
    ]


def _events(repo_ids: tuple[int, ...], n: int, seed: int) -> list[CommitEvent]:
    rnd = random.Random(seed)
    brnd = random.Random(seed + 1)  # blob measures: the other values as before they existed
    people = [("Ada", "ada@x.org"), ("ADA", "Ada@X.org"), ("Bob", "bob@y"), ("李", "li@z")]
    out = []
    for i in range(n):
        name, email = rnd.choice(people)
        when = (
            f"20{rnd.randint(10, 24)}-{rnd.randint(1, 12):02}-{rnd.randint(1, 28):02}"
            f"T{rnd.randint(0, 23):02}:{rnd.randint(0, 59):02}:00"
            + rnd.choice(["+00:00", "-07:00", "+05:30", "+14:00", "-12:00"])
        )
        files = tuple(
            FileChange(p, 0, 0, True, blob=blob(brnd)) if p.endswith(".png") else
            FileChange(p, rnd.randint(0, 300), rnd.randint(0, 300), blob=blob(brnd))
            for p in rnd.sample(PATHS, rnd.randint(0, 4))
        )  # fmt: skip
        merge_files = tuple(
            MergeFile(p, rnd.randint(-50, 50), rnd.randint(-2, 2), blob(brnd))
            for p in rnd.sample(PATHS, rnd.randint(0, 2))
        )
        out.append(event(i, repo_id=rnd.choice(repo_ids), author=person(name, email, when),
                         files=files, merge=rnd.random() < 0.15,
                         merge_files=merge_files))  # fmt: skip
    return out


async def _tables(dsn: str) -> dict[str, list[dict[str, Any]]]:
    con = await asyncpg.connect(dsn)
    try:
        out = {}
        for name, spec in sorted(TABLES.items()):
            order = ", ".join(c.name for c in spec.key)
            rows = await con.fetch(f"SELECT * FROM {name} ORDER BY {order}")
            out[name] = [dict(r) for r in rows]
        return out
    finally:
        await con.close()


async def _fill(store: PgStore, events: list[CommitEvent], seed: int) -> None:
    rnd = random.Random(seed)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    batches, i = [], 0
    while i < len(shuffled):
        size = rnd.randint(1, 40)
        batches.append(shuffled[i : i + size])
        i += size
    for b in batches:
        await store.apply(b)
        if rnd.random() < 0.3:  # redelivery of an earlier batch, whole or in part
            again = rnd.choice(batches)
            await store.apply(again[: rnd.randint(1, len(again))])
    for b in rnd.sample(batches, len(batches) // 2):  # and a late duplicate of half of them
        await store.apply(b)


async def test_orders_and_duplicates_give_identical_tables(
    store: PgStore, make_database: MakeDatabase
) -> None:
    dsns = [store._dsn, await make_database(), await make_database()]
    stores = [store] + [await PgStore.connect(d, max_size=2) for d in dsns[1:]]
    try:
        ids = []
        for s in stores:
            ids.append((await s.add_repo("https://e.org/a.git", None)).id)
            await s.add_repo("https://e.org/b.git", None)
        assert len(set(ids)) == 1
        events = _events((ids[0], ids[0] + 1), 300, seed=5)
        for k, s in enumerate(stores):
            await _fill(s, events, seed=100 + k)
        states = [await _tables(d) for d in dsns]
        assert set(states[0]) == set(TABLES)
        assert all(states[0][t] for t in TABLES)  # every table has rows: nothing vacuous
        assert states[1] == states[0]
        assert states[2] == states[0]
    finally:
        for s in stores[1:]:
            await s.close()
        for d in dsns[1:]:
            await drop_database(d)
