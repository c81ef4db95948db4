"""Per-author totals: commits, lines, first and last commit, current name (pure).

Identity is the author email (after .mailmap) lower-cased. The name is the one on the latest
commit; commits at the same instant break the tie by the greatest name (code point order), so
the row does not depend on the order events arrive in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

from ingest.events import CommitEvent
from processors.metrics import Delta

TABLE = "author_totals"


def authors(e: CommitEvent) -> Iterator[Delta]:
    """One `author_totals` row per (repo, lower-cased author email)."""
    when = e.author.time.astimezone(UTC)
    yield Delta(
        TABLE,
        (e.repo_id, e.author.email.lower()),
        {"commits": 1, "added": e.added, "removed": e.removed},
        least={"first_commit_at": when},
        greatest={"latest": (when, e.author.name)},
    )
