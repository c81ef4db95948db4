"""Activity per day: commits, merges, lines added and removed (pure).

The day is the author date in UTC. Merge commits count as merges and carry no lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

from ingest.events import CommitEvent
from processors.metrics import Delta

TABLE = "activity_daily"


def activity(e: CommitEvent) -> Iterator[Delta]:
    """One `activity_daily` row per (repo, UTC author day)."""
    day = e.author.time.astimezone(UTC).date()
    yield Delta(
        TABLE,
        (e.repo_id, day),
        {"commits": 1, "merges": int(e.is_merge), "added": e.added, "removed": e.removed},
    )
