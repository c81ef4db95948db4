"""The repository registry of PgStore against the real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from metre.processors.metrics import TABLES
from metre.processors.store import PgStore, RepoExists
from tests.processors.factories import event

pytestmark = pytest.mark.integration


async def test_add_get_list(store: PgStore) -> None:
    a = await store.add_repo("https://example.org/a.git", None)
    b = await store.add_repo("https://example.org/b.git", "dev")
    assert (a.state, a.branch, a.commits, a.failures, a.head, a.error) == (
        "pending", None, 0, 0, None, None
    )  # fmt: skip
    assert a.next_poll_at <= b.next_poll_at
    assert a.last_polled_at is None
    assert await store.get_repo(b.id) == b
    assert await store.get_repo(b.id + 100) is None
    assert [r.id for r in await store.list_repos()] == [a.id, b.id]


async def test_duplicate_url_raises_repo_exists(store: PgStore) -> None:
    await store.add_repo("https://example.org/a.git", None)
    with pytest.raises(RepoExists):
        await store.add_repo("https://example.org/a.git", "other")
    assert len(await store.list_repos()) == 1


async def test_commits_counts_ingested_commits(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    await store.apply([event(i, repo_id=r.id) for i in range(3)])
    got = await store.get_repo(r.id)
    assert got is not None
    assert got.commits == 3


async def test_delete_repo_removes_its_data(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    await store.apply([event(1, repo_id=r.id)])
    assert (await store.get_commit(r.id, event(1).sha) or {}).get("files")
    assert await store.delete_repo(r.id)
    assert not await store.delete_repo(r.id)
    assert await store.get_commit(r.id, event(1).sha) is None
    assert await store.activity(r.id, None, None, "day") == []
    async with store.pool.acquire() as con:
        # Metric rows and file changes have no foreign key to cascade from (0007, 0010).
        assert await con.fetchval("SELECT count(*) FROM file_changes WHERE repo_id = $1", r.id) == 0
        for name in TABLES:
            n = await con.fetchval(f"SELECT count(*) FROM {name} WHERE repo_id = $1", r.id)
            assert n == 0, name


async def test_concurrent_claimers_never_take_the_same_repo(store: PgStore) -> None:
    ids = {(await store.add_repo(f"https://example.org/{i}.git", None)).id for i in range(30)}
    others = [await PgStore.connect(store._dsn, max_size=2) for _ in range(3)]
    try:

        async def claimer(s: PgStore) -> list[int]:
            got = []
            while (row := await s.claim_due_repo(60)) is not None:
                assert row.state == "polling"
                got.append(row.id)
            return got

        claims = await asyncio.gather(*(claimer(s) for s in [store, store, *others]))
        flat = [i for c in claims for i in c]
        assert sorted(flat) == sorted(ids)  # each exactly once
        assert await store.claim_due_repo(60) is None
    finally:
        for s in others:
            await s.close()


async def test_an_expired_lease_can_be_claimed_again(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    assert (await store.claim_due_repo(0.3)) is not None
    assert await store.claim_due_repo(0.3) is None
    await asyncio.sleep(0.4)
    again = await store.claim_due_repo(0.3)
    assert again is not None
    assert again.id == r.id


async def test_set_progress_and_polled(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    await store.claim_due_repo(60)
    await store.set_progress(r.id, 5, 10)
    row = await store.get_repo(r.id)
    assert row is not None
    assert (row.progress_done, row.progress_total) == (5, 10)
    await store.set_failed(r.id, "boom", 0)
    await store.claim_due_repo(60)
    await store.set_polled(r.id, "a" * 40, 120)
    row = await store.get_repo(r.id)
    assert row is not None
    assert (row.state, row.head, row.error, row.failures) == ("idle", "a" * 40, None, 0)
    assert row.last_polled_at is not None
    assert 119 < (row.next_poll_at - row.last_polled_at).total_seconds() <= 120
    assert await store.claim_due_repo(60) is None  # not due


async def test_set_failed_fields(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    await store.claim_due_repo(60)
    await store.set_failed(r.id, "cannot fetch", 30)
    row = await store.get_repo(r.id)
    assert row is not None
    assert (row.state, row.error, row.failures) == ("failed", "cannot fetch", 1)
    assert row.last_polled_at is not None
    assert 29 < (row.next_poll_at - row.last_polled_at).total_seconds() <= 30
    assert await store.claim_due_repo(60) is None  # lease released, but not due yet
    await store.request_poll(r.id)
    assert await store.claim_due_repo(60) is not None
    await store.set_failed(r.id, "again", 30)
    row = await store.get_repo(r.id)
    assert row is not None
    assert (row.failures, row.error) == (2, "again")


async def test_request_poll(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    await store.claim_due_repo(60)
    await store.set_polled(r.id, None, 3600)
    assert await store.claim_due_repo(60) is None
    assert await store.request_poll(r.id)
    assert not await store.request_poll(r.id + 100)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    assert claimed.id == r.id


async def test_a_request_during_a_poll_makes_it_due_at_once(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    await store.claim_due_repo(60)
    await store.request_poll(r.id)
    assert await store.claim_due_repo(60) is None  # still leased
    await store.set_polled(r.id, None, 3600)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    assert claimed.id == r.id


async def test_wait_for_poll_request_returns_early_on_request(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    t0 = time.monotonic()
    await store.wait_for_poll_request(0.2)  # nothing requested: the full timeout
    assert time.monotonic() - t0 >= 0.19
    other = await PgStore.connect(store._dsn, max_size=1)
    try:
        waiter = asyncio.create_task(store.wait_for_poll_request(30))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await other.request_poll(r.id)
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - t0 < 5
    finally:
        await other.close()
