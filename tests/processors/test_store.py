"""PgStore against the real (embedded) PostgreSQL: migrations, exactly-once apply, reads."""

from __future__ import annotations

import asyncio
import random
from datetime import date
from typing import Any

import asyncpg
import pytest

from metre.contracts.events import CommitEvent, FileChange
from metre.processors.database import _migrations
from metre.processors.metrics import total
from metre.processors.metrics.activity import activity
from metre.processors.metrics.authors import authors
from metre.processors.store import PgStore
from testkit.postgres import create_database, drop_database
from tests.fixtures.postgres import MakeDatabase
from tests.processors.factories import event, person

pytestmark = pytest.mark.integration


async def table_state(store: PgStore) -> dict[str, Any]:
    """Everything apply writes, as plain sorted data."""
    con = await asyncpg.connect(store._dsn)
    try:
        out = {}
        for table, order in (
            ("commits", "repo_id, sha"),
            ("file_changes", "repo_id, sha, seq"),
            ("activity_daily", "repo_id, day, kind"),
            ("author_totals", "repo_id, email, kind"),
        ):
            rows = await con.fetch(f"SELECT * FROM {table} ORDER BY {order}")
            out[table] = [{k: v for k, v in r.items() if k != "ingested_at"} for r in rows]
        return out
    finally:
        await con.close()


def expected_metrics(events: list[CommitEvent]) -> dict[str, list[dict[str, Any]]]:
    """The metric tables the pure metrics say these (unique) events produce."""
    days, people = [], []
    for d in total(events, metrics=[activity, authors]):
        if d.table == "activity_daily":
            days.append({"repo_id": d.key[0], "day": d.key[1], **d.add, "kind": d.key[2]})
        else:
            last, name = d.greatest["latest"]
            people.append({
                "repo_id": d.key[0], "email": d.key[1], "name": name, **d.add,
                "first_commit_at": d.least["first_commit_at"], "last_commit_at": last,
                "kind": d.key[2],
            })  # fmt: skip
    key = lambda r: (r["repo_id"], r.get("day") or r["email"], r["kind"])  # noqa: E731
    return {"activity_daily": sorted(days, key=key), "author_totals": sorted(people, key=key)}


async def repo(store: PgStore, name: str = "a") -> int:
    return (await store.add_repo(f"https://example.org/{name}.git", None)).id


async def test_migrate_is_idempotent(store: PgStore) -> None:
    assert await store.migrate() == []


async def test_concurrent_migrations_on_an_empty_database_take_turns(pg_dsn: str) -> None:
    dsn = await create_database(pg_dsn)
    stores = [await PgStore.connect(dsn, max_size=1) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(len(a) for a in applied) == [0, 0, len(_migrations())]
        assert sorted(applied[0] + applied[1] + applied[2]) == [n for _, n, _ in _migrations()]
    finally:
        for s in stores:
            await s.close()
        await drop_database(dsn)


async def test_apply_twice_equals_once(store: PgStore) -> None:
    r = await repo(store)
    events = [event(i, repo_id=r) for i in range(5)] + [event(9, repo_id=r, merge=True)]
    assert await store.apply(events) == 6
    once = await table_state(store)
    assert await store.apply(events) == 0
    assert await store.apply(list(reversed(events[2:]))) == 0
    assert await table_state(store) == once
    assert len(once["commits"]) == 6
    assert len(once["file_changes"]) == 5


async def test_duplicates_inside_a_batch_count_once(store: PgStore) -> None:
    r = await repo(store)
    e = event(1, repo_id=r)
    assert await store.apply([e, e, e]) == 1
    (day,) = await store.activity(r, None, None, "day")
    assert day["commits"] == 1


async def test_events_of_unknown_repositories_change_nothing(store: PgStore) -> None:
    r = await repo(store)
    assert await store.apply([event(1, repo_id=r + 1000), event(2, repo_id=r)]) == 1
    assert (await table_state(store))["commits"][0]["repo_id"] == r


async def test_applied_metrics_equal_the_pure_metrics(store: PgStore) -> None:
    r1, r2 = await repo(store, "a"), await repo(store, "b")
    rnd = random.Random(7)
    people = [person("Ada", "ada@x.org"), person("Bob", "BOB@y.org"), person("bob", "bob@y.org")]
    events = []
    for i in range(60):
        p = rnd.choice(people)
        when = f"2024-{rnd.randint(1, 12):02}-{rnd.randint(1, 28):02}T{rnd.randint(0, 23):02}:00:00"
        off = rnd.choice(["+00:00", "-07:00", "+05:30", "+14:00"])
        files = tuple(FileChange(f"f{j}", rnd.randint(0, 9), rnd.randint(0, 9)) for j in range(3))
        events.append(event(
            i, repo_id=rnd.choice([r1, r2]), author=person(p.name, p.email, when + off),
            files=files, merge=rnd.random() < 0.2,
        ))  # fmt: skip
    for start in range(0, 60, 7):
        await store.apply(events[start : start + 11])
    state = await table_state(store)
    assert {k: state[k] for k in ("activity_daily", "author_totals")} == expected_metrics(events)


async def test_overlapping_concurrent_applies_count_once(
    store: PgStore, make_database: MakeDatabase
) -> None:
    r1, r2 = await repo(store, "a"), await repo(store, "b")
    other = await PgStore.connect(store._dsn, max_size=4)
    try:
        rnd = random.Random(3)
        events = [
            event(i, repo_id=rnd.choice([r1, r2]),
                  author=person(rnd.choice("ABC"), rnd.choice("ab") + "@x",
                                f"2024-05-{rnd.randint(1, 9):02}T12:00:00+00:00"))
            for i in range(400)
        ]  # fmt: skip
        batches = []
        for _ in range(40):
            lo = rnd.randrange(0, 400)
            batch = events[lo : lo + rnd.randint(1, 60)]
            rnd.shuffle(batch)
            batches.append(batch)
        half = len(batches) // 2

        async def run(s: PgStore, bs: list[list[CommitEvent]]) -> int:
            return sum([await s.apply(b) for b in bs])

        news = await asyncio.gather(
            run(store, batches[:half]),
            run(other, batches[half:]),
            run(store, batches[::-1][:half]),
            run(other, batches[::3]),
        )
        applied = {(e.repo_id, e.sha): e for b in batches for e in b}
        assert sum(news) == len(applied)
        state = await table_state(store)
        assert len(state["commits"]) == len(applied)
        want = expected_metrics(list(applied.values()))
        assert {k: state[k] for k in ("activity_daily", "author_totals")} == want
    finally:
        await other.close()


async def test_get_commit(store: PgStore) -> None:
    r = await repo(store)
    a = person("Zoë", "Zoe@Z.org", "2024-03-03T23:30:00-02:30")
    files = (FileChange("x.py", 4, 2, change="A"), FileChange("img.png", 0, 0, True, "M"))
    e = event(1, repo_id=r, author=a, files=files)
    await store.apply([e])
    got = await store.get_commit(r, e.sha)
    assert got == {
        "sha": e.sha,
        "author": {
            "name": "Zoë",
            "email": "Zoe@Z.org",
            "time": "2024-03-03T23:30:00-02:30",
            "time_raw": None,
        },
        "committer": {
            "name": "Zoë",
            "email": "Zoe@Z.org",
            "time": "2024-03-03T23:30:00-02:30",
            "time_raw": None,
        },
        "parents": list(e.parents),
        "summary": "commit 1",
        "is_merge": False,
        "files": [
            {"path": "x.py", "added": 4, "removed": 2, "binary": False, "change": "A"},
            {"path": "img.png", "added": 0, "removed": 0, "binary": True, "change": "M"},
        ],
    }
    assert await store.get_commit(r, "0" * 40) is None
    assert await store.get_commit(r + 1, e.sha) is None


async def test_activity_by_day_week_and_month(store: PgStore) -> None:
    r = await repo(store)
    when = [
        "2024-02-26T10:00:00+00:00",  # Monday, ISO week 9
        "2024-03-03T23:30:00-02:00",  # Sunday locally, Monday 2024-03-04 in UTC: week 10
        "2024-03-04T08:00:00+00:00",
        "2024-03-31T23:00:00+00:00",  # Sunday, week 13
        "2024-04-01T00:30:00+02:00",  # 2024-03-31 in UTC
    ]
    events = [event(i, repo_id=r, author=person(time=t)) for i, t in enumerate(when)]
    events.append(event(99, repo_id=r, merge=True, author=person(time="2024-02-27T00:00:00Z")))
    await store.apply(events)

    def row(period: str, commits: int, merges: int = 0) -> dict[str, Any]:
        lines = commits - merges
        return {"period": period, "commits": commits, "merges": merges,
                "added": 3 * lines, "removed": lines}  # fmt: skip

    assert await store.activity(r, None, None, "day") == [
        row("2024-02-26", 1), row("2024-02-27", 1, 1), row("2024-03-04", 2), row("2024-03-31", 2)
    ]  # fmt: skip
    assert await store.activity(r, None, None, "week") == [
        row("2024-02-26", 2, 1), row("2024-03-04", 2), row("2024-03-25", 2)
    ]  # fmt: skip
    assert await store.activity(r, None, None, "month") == [
        row("2024-02-01", 2, 1), row("2024-03-01", 4)
    ]  # fmt: skip
    assert await store.activity(r, date(2024, 2, 27), date(2024, 3, 4), "day") == [
        row("2024-02-27", 1, 1), row("2024-03-04", 2)
    ]  # fmt: skip
    assert await store.activity(r, date(2024, 3, 5), None, "month") == [row("2024-03-01", 2)]
    assert await store.activity(r + 1, None, None, "day") == []
    with pytest.raises(ValueError, match="granularity"):
        await store.activity(r, None, None, "year")


async def test_authors(store: PgStore) -> None:
    r = await repo(store)
    events = [
        event(1, repo_id=r, author=person("Ada", "ada@x.org", "2024-01-01T00:00:00+00:00")),
        event(2, repo_id=r, author=person("Ada L", "ADA@x.org", "2024-03-01T00:00:00+01:00")),
        event(3, repo_id=r, author=person("Bob", "bob@x.org", "2024-02-01T00:00:00+00:00")),
        event(4, repo_id=r, author=person("Cy", "cy@x.org", "2024-02-01T00:00:00+00:00")),
        event(5, repo_id=r, author=person("Al", "al@x.org", "2024-02-02T00:00:00+00:00")),
    ]
    # Applied latest-first, in two batches: the result must not depend on it.
    await store.apply(events[3:][::-1])
    await store.apply(events[:3][::-1])
    assert await store.authors(r) == [
        {"name": "Ada L", "email": "ada@x.org", "commits": 2, "added": 6, "removed": 2,
         "first_commit_at": "2024-01-01T00:00:00+00:00",
         "last_commit_at": "2024-02-29T23:00:00+00:00"},
        {"name": "Al", "email": "al@x.org", "commits": 1, "added": 3, "removed": 1,
         "first_commit_at": "2024-02-02T00:00:00+00:00",
         "last_commit_at": "2024-02-02T00:00:00+00:00"},
        {"name": "Bob", "email": "bob@x.org", "commits": 1, "added": 3, "removed": 1,
         "first_commit_at": "2024-02-01T00:00:00+00:00",
         "last_commit_at": "2024-02-01T00:00:00+00:00"},
        {"name": "Cy", "email": "cy@x.org", "commits": 1, "added": 3, "removed": 1,
         "first_commit_at": "2024-02-01T00:00:00+00:00",
         "last_commit_at": "2024-02-01T00:00:00+00:00"},
    ]  # fmt: skip


async def test_author_name_tie_break_matches_the_pure_metric(store: PgStore) -> None:
    r = await repo(store)
    t = "2024-01-01T12:00:00+00:00"
    names = ["bob", "Bob", "Zoë", "Zoe", "李"]
    events = [event(i, repo_id=r, author=person(n, "same@x", t)) for i, n in enumerate(names)]
    for e in events:  # one batch each: the tie is broken in SQL, not in Python
        await store.apply([e])
    ((row,), (d,)) = await store.authors(r), total(events, metrics=[authors])
    assert row["name"] == d.greatest["latest"][1] == "李"
