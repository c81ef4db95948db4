"""Applying tags events on the real PostgreSQL: a snapshot replaces the repository's tags,
redelivery changes nothing (and does not move the watermark), the last snapshot of a batch
wins, an unregistered repository's snapshot is dropped; the roles' poller gets the patterns
of METRE_RELEASE_TAGS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metre.contracts.bus import InMemoryBus
from metre.contracts.tags import ReleaseTag, TagsEvent
from metre.processors.store import PgStore
from metre.settings import Settings
from metre.wiring import make_poller

pytestmark = pytest.mark.integration

A, B = "a" * 40, "b" * 40
WHEN = datetime(2024, 3, 8, 10, tzinfo=UTC)


async def _tags(store: PgStore, repo_id: int) -> list[tuple[str, str]]:
    recs = await store.pool.fetch(
        "SELECT name, sha FROM release_tags WHERE repo_id = $1 ORDER BY name", repo_id
    )
    return [(r["name"], r["sha"]) for r in recs]


async def test_snapshots_replace_and_redelivery_is_a_no_op(store: PgStore) -> None:
    rid = (await store.add_repo("https://example.org/r.git", None)).id
    one = TagsEvent(rid, (ReleaseTag("v1", A, WHEN, True), ReleaseTag("v2", A, WHEN, False)))
    changes = await store.apply_changes([one])
    assert [(c.repo_id, c.tables, c.tags) for c in changes] == [
        (rid, frozenset({"release_tags"}), 1)
    ]
    assert await _tags(store, rid) == [("v1", A), ("v2", A)]
    assert await store.release_digests(rid) == (None, one.digest)

    assert await store.apply_changes([one]) == []  # the same snapshot again: nothing moves

    moved = TagsEvent(rid, (ReleaseTag("v2", B, WHEN, False),))  # v1 deleted, v2 moved
    gone = TagsEvent(rid, ())
    await store.apply_changes([gone, moved])  # in partition order: the last one wins
    assert await _tags(store, rid) == [("v2", B)]
    await store.apply_changes([gone])
    assert await _tags(store, rid) == []
    assert await store.release_digests(rid) == (None, None)

    await store.set_release_published(rid, moved.digest)
    assert (await store.release_digests(rid))[0] == moved.digest


async def test_unregistered_repository_changes_nothing(store: PgStore) -> None:
    assert await store.apply_changes([TagsEvent(10**9, (ReleaseTag("v1", A, WHEN, True),))]) == []


async def test_roles_track_the_configured_patterns(store: PgStore) -> None:
    bus = InMemoryBus()
    assert make_poller(Settings(), bus, store).config.release_tags == ("v[0-9]*", "[0-9]*")
    custom = Settings(release_tags="release-*, r[0-9]*")
    assert make_poller(custom, bus, store).config.release_tags == ("release-*", "r[0-9]*")
    assert make_poller(Settings(release_tags=""), bus, store).config.release_tags == ()
