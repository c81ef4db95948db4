"""Per-author totals: commits, lines, first and last commit, current name (pure).

Identity is the author email (after .mailmap) lower-cased. The name is the one on the latest
commit; commits at the same instant break the tie by the greatest name (code point order), so
the row does not depend on the order events arrive in. Rows are per commit kind
(processors/metrics/policy.py); a read folds the kinds its policy counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC
from typing import Any

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta, Rows
from metre.processors.metrics.catalogue import BOTS, INT32_MAX
from metre.processors.metrics.policy import kind, of, params, resolver
from metre.processors.metrics.spec import MetricSpec, Param, Route, Writer
from metre.processors.metrics.table import Column, Extreme, MetricTable

TABLE = "author_totals"


def authors(e: CommitEvent) -> Iterator[Delta]:
    """One `author_totals` row per (repo, lower-cased author email, commit kind)."""
    when = e.author.time.astimezone(UTC)
    yield Delta(
        TABLE,
        (e.repo_id, e.author.email.lower(), kind(e)),
        {"commits": 1, "added": e.added, "removed": e.removed},
        least={"first_commit_at": when},
        greatest={"latest": (when, e.author.name)},
    )


def fold(e: CommitEvent, rows: Rows) -> None:
    """`authors`'s delta merged straight into `rows`: counters, then the two extremes."""
    when = e.author.time.astimezone(UTC)
    key = (e.repo_id, e.author.email.lower(), kind(e))
    table = rows[TABLE]
    r = table.get(key)
    if r is None:
        table[key] = [1, e.added, e.removed, when, (when, e.author.name)]
        return
    r[0] += 1
    r[1] += e.added
    r[2] += e.removed
    if when < r[3]:
        r[3] = when
    latest = (when, e.author.name)
    if latest > r[4]:
        r[4] = latest


async def read(store: Any, ids: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
    from metre.processors import reads  # deferred: the reads import the store, which imports this

    rows = await reads.authors(store, ids, of(p), p["bots"])
    limit, offset = p["limit"], p["offset"]
    end = None if limit is None else offset + limit
    return {"authors": rows[offset:end], "total": len(rows)}


WRITER: Writer = Writer(
    "authors",
    tables=(
        MetricTable(
            TABLE,
            key=(Column("repo_id", "bigint"), Column("email", "text"), Column("kind", "smallint")),
            counters=("commits", "added", "removed"),
            extremes=(
                Extreme("first_commit_at", "least", (Column("first_commit_at", "timestamptz"),)),
                Extreme(
                    "latest",
                    "greatest",
                    (Column("last_commit_at", "timestamptz"), Column("name", "text", collate="C")),
                ),
            ),
        ),
    ),
    oracle=authors,
    fold=fold,
    rebuilt_at=(21,),  # 0021: the commit kind joined the key
)
SPEC: MetricSpec = MetricSpec(
    "authors",
    "Per author (an individual: lower-cased emails regrouped by the identities, named by "
    "its smallest email): commits, lines added and removed, first and last commit",
    "commits; lines; timestamps",
    version=3,
    sources=(TABLE,),
    params=(
        *params(),
        BOTS,
        Param("limit", "integer", None, "page size; every author if omitted", ge=1, le=1000),
        Param("offset", "integer", 0, "authors skipped", ge=0, le=INT32_MAX),
    ),
    writer=WRITER,
    resolve=resolver(),
    route=Route(
        "Per-author totals, first and last commit", read, response="AuthorsOut", people=True
    ),
)
