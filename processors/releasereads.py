"""Reads of the release inputs for the API (I/O: PostgreSQL queries only).

The commit graph and the tags snapshot are read in one repeatable-read transaction, so a
batch committing in between (a force-push's retractions, a moved tag) is seen whole or not at
all. The derivation is processors/metrics/releases.py.
"""

from __future__ import annotations

from datetime import timedelta, timezone

from metre.processors.database import Database
from metre.processors.metrics.releases import Node, Tag


async def release_inputs(store: Database, repo_id: int) -> tuple[dict[str, Node], list[Tag]]:
    """(sha -> node of every ingested commit, the applied release tags)."""
    async with (
        store.pool.acquire() as con,
        con.transaction(isolation="repeatable_read", readonly=True),
    ):
        # parents as one string: splitting it costs less than decoding a text[] per row
        commits = await con.fetch(
            "SELECT sha, array_to_string(parents, ' '), author_time, added, removed, is_merge"
            " FROM commits WHERE repo_id = $1",
            repo_id,
        )
        tags = await con.fetch(
            "SELECT name, sha, tagged_at, tz_seconds, annotated FROM release_tags"
            " WHERE repo_id = $1",
            repo_id,
        )
    # asyncpg gives timestamptz in UTC already (tzinfo timezone.utc): no conversion per row
    graph = {
        sha: Node(tuple(parents.split()), at, added, removed, is_merge)
        for sha, parents, at, added, removed, is_merge in commits
    }
    out = [
        Tag(
            r["name"], r["sha"],
            r["tagged_at"].astimezone(timezone(timedelta(seconds=r["tz_seconds"]))),
            r["annotated"],
        )
        for r in tags
    ]  # fmt: skip
    return graph, out
