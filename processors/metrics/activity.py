"""Activity per day and commit kind: commits, merges, lines added and removed (pure).

The day is the author date in UTC. Merge commits count as merges and carry no lines. The kind
(processors/metrics/policy.py) lets a read leave merges or empty commits out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date
from typing import Any

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta, Rows, bump
from metre.processors.metrics.catalogue import GRANULARITY
from metre.processors.metrics.policy import kind, of, params, resolve_policy
from metre.processors.metrics.spec import MetricSpec, Param, Route, Writer
from metre.processors.metrics.table import Column, MetricTable

TABLE = "activity_daily"


def activity(e: CommitEvent) -> Iterator[Delta]:
    """One `activity_daily` row per (repo, UTC author day, commit kind)."""
    day = e.author.time.astimezone(UTC).date()
    yield Delta(
        TABLE,
        (e.repo_id, day, kind(e)),
        {"commits": 1, "merges": int(e.is_merge), "added": e.added, "removed": e.removed},
    )


def fold(e: CommitEvent, rows: Rows) -> None:
    """`activity`'s delta merged straight into `rows` (counters in the table's order)."""
    day = e.author.time.astimezone(UTC).date()
    bump(rows[TABLE], (e.repo_id, day, kind(e)), 1, int(e.is_merge), e.added, e.removed)


def resolve(values: Mapping[str, Any]) -> dict[str, Any]:
    """The period, the dates as ISO text and the resolved policy; from after to is refused."""
    start, end = values["from"], values["to"]
    if start is not None and end is not None and start > end:
        raise ValueError(f"from ({start}) is after to ({end})")
    return {
        "granularity": values["granularity"],
        "from": None if start is None else start.isoformat(),
        "to": None if end is None else end.isoformat(),
        **resolve_policy(values).params(),
    }


async def read(store: Any, ids: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
    from metre.processors import reads  # deferred: the reads import the store, which imports this

    start, end = (None if p[k] is None else date.fromisoformat(p[k]) for k in ("from", "to"))
    series = await reads.activity(store, ids, start, end, p["granularity"], of(p))
    return {"granularity": p["granularity"], "series": series}


WRITER: Writer = Writer(
    "activity",
    tables=(
        MetricTable(
            TABLE,
            key=(Column("repo_id", "bigint"), Column("day", "date"), Column("kind", "smallint")),
            counters=("commits", "merges", "added", "removed"),
        ),
    ),
    oracle=activity,
    fold=fold,
    rebuilt_at=(21,),  # 0021: the commit kind joined the key
)
SPEC: MetricSpec = MetricSpec(
    "activity",
    "Commits, merge commits, and lines added and removed per period (author date, UTC; "
    "merges and empty commits counted or not by the policy parameters)",
    "commits; lines",
    version=2,
    sources=(TABLE,),
    params=(
        GRANULARITY,
        Param("from", "date", None, "first day, inclusive (UTC author date)"),
        Param("to", "date", None, "last day, inclusive (UTC author date)"),
        *params(),
    ),
    org=True,
    writer=WRITER,
    resolve=resolve,
    route=Route(
        "Commits, merges and lines added/removed per period (author date, UTC)",
        read,
        response="ActivityOut",
        org_summary="Activity summed over repositories",
        org_response="ActivityOrgOut",
    ),
)
