"""A long poll keeps its repository: progress reports extend the lease."""

from __future__ import annotations

import asyncio

import pytest

from metre.processors.store import PgStore

pytestmark = pytest.mark.integration


async def test_progress_extends_the_lease_so_no_second_poller_takes_over(store: PgStore) -> None:
    r = await store.add_repo("https://example.org/a.git", None)
    assert await store.claim_due_repo(0.2) is not None  # a lease that expires at once
    await store.set_progress(r.id, 1, 10, lease_seconds=300)
    await asyncio.sleep(0.3)  # the first lease has expired by now
    await store.request_poll(r.id)
    assert await store.claim_due_repo(60) is None  # still leased: nobody else takes it
    await store.set_progress(r.id, 2, 10)  # without a lease: unchanged, still leased
    assert await store.claim_due_repo(60) is None
    await store.set_polled(r.id, "a" * 40, 0, "b" * 40)
    got = await store.get_repo(r.id)
    assert got is not None
    assert (got.head, got.mailmap_sha) == ("a" * 40, "b" * 40)
    assert await store.claim_due_repo(60) is not None  # released
