"""Applying tags events and the pollers' bookkeeping of them (I/O: PostgreSQL).

A tags event is a snapshot: it replaces the repository's `release_tags` rows when its digest
differs from the one applied last, in the batch's transaction, and records the new digest in
`repos.tags_applied`. Of several snapshots of one repository in a batch only the last counts
(they come in partition order). Events of unregistered repositories change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from metre.contracts.tags import TagsEvent

_INSERT = """
INSERT INTO release_tags (repo_id, name, sha, tagged_at, tz_seconds, annotated)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::int[],
                     $6::bool[])
"""


async def apply_tags(
    con: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], events: Sequence[TagsEvent]
) -> list[int]:
    """Apply the last snapshot of each repository in `events`; the ids of the repositories
    whose tags changed, sorted (locks are taken in that order)."""
    last: dict[int, TagsEvent] = {}
    for e in events:
        last[e.repo_id] = e
    changed = []
    for repo_id in sorted(last):
        e = last[repo_id]
        rec = await con.fetchrow(
            "SELECT tags_applied FROM repos WHERE id = $1 FOR NO KEY UPDATE", repo_id
        )
        if rec is None or rec["tags_applied"] == e.digest:
            continue
        await con.execute("DELETE FROM release_tags WHERE repo_id = $1", repo_id)
        if e.tags:
            offsets = [int(t.time.utcoffset().total_seconds()) for t in e.tags]  # type: ignore[union-attr]
            await con.execute(
                _INSERT,
                [repo_id] * len(e.tags),
                [t.name for t in e.tags],
                [t.sha for t in e.tags],
                [t.time for t in e.tags],
                offsets,
                [t.annotated for t in e.tags],
            )
        await con.execute("UPDATE repos SET tags_applied = $2 WHERE id = $1", repo_id, e.digest)
        changed.append(repo_id)
    return changed
