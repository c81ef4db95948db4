"""Contributors per period: active, new, returning and cumulative (pure).

The processors maintain `author_days` (commits per lower-cased author email per UTC author
day), which is additive; the series is derived from it on read by `series`, which is where the
definitions live (docs/metrics.md has them too). Rows are per commit kind
(processors/metrics/policy.py): a read keeps the days with a commit its policy counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, timedelta
from typing import Any

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta, Rows, bump
from metre.processors.metrics.catalogue import BOTS, GRANULARITY
from metre.processors.metrics.policy import kind, of, params, resolver
from metre.processors.metrics.spec import MetricSpec, Param, Route, Writer
from metre.processors.metrics.table import Column, MetricTable

TABLE = "author_days"
DEFAULT_GAP_DAYS = 90


def author_days(e: CommitEvent) -> Iterator[Delta]:
    """One `author_days` row per (repo, lower-cased author email, UTC author day, kind)."""
    day = e.author.time.astimezone(UTC).date()
    yield Delta(TABLE, (e.repo_id, e.author.email.lower(), day, kind(e)), {"commits": 1})


def fold(e: CommitEvent, rows: Rows) -> None:
    """`author_days`'s delta merged straight into `rows`."""
    day = e.author.time.astimezone(UTC).date()
    bump(rows[TABLE], (e.repo_id, e.author.email.lower(), day, kind(e)), 1)


def period_start(day: date, granularity: str) -> date:
    """The first day of `day`'s period: itself, the ISO week's Monday, or the month's 1st."""
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    if granularity == "day":
        return day
    raise ValueError(f"granularity must be day, week or month, not {granularity!r}")


def series(
    days: Iterable[tuple[str, date]], granularity: str, gap_days: int = DEFAULT_GAP_DAYS
) -> list[dict[str, Any]]:
    """Per period with at least one active contributor, in period order:

    - `active`: contributors with a commit in the period;
    - `new`: contributors whose first commit ever is in the period;
    - `returning`: contributors with a commit on a day d in the period whose previous commit
      day d' is more than `gap_days` days earlier (d - d' > gap_days: at least `gap_days`
      whole days without a commit in between); a first commit is never a return;
    - `cumulative`: contributors whose first commit is in this period or earlier.

    `days` holds (identity, day) pairs for days with commits; duplicates are harmless.
    """
    if gap_days < 0:
        raise ValueError("gap_days must be >= 0")
    by_person: dict[str, set[date]] = defaultdict(set)
    for who, day in days:
        by_person[who].add(day)
    active: dict[date, set[str]] = defaultdict(set)
    new: dict[date, set[str]] = defaultdict(set)
    back: dict[date, set[str]] = defaultdict(set)
    for who, ds in by_person.items():
        prev: date | None = None
        for d in sorted(ds):
            p = period_start(d, granularity)
            active[p].add(who)
            if prev is None:
                new[p].add(who)
            elif (d - prev).days > gap_days:
                back[p].add(who)
            prev = d
    out: list[dict[str, Any]] = []
    cumulative = 0
    for p in sorted(active):
        cumulative += len(new[p])
        out.append(
            {
                "period": p.isoformat(),
                "active": len(active[p]),
                "new": len(new[p]),
                "returning": len(back[p]),
                "cumulative": cumulative,
            }
        )
    return out


async def read(store: Any, ids: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
    from metre.processors import reads  # deferred: the reads import the store, which imports this

    days = await reads.author_days(store, ids, of(p), p["bots"])
    return {
        "granularity": p["granularity"],
        "gap_days": p["gap_days"],
        "series": series(days, p["granularity"], p["gap_days"]),
    }


WRITER: Writer = Writer(
    "contributors",
    tables=(
        MetricTable(
            TABLE,
            key=(
                Column("repo_id", "bigint"),
                Column("email", "text"),
                Column("day", "date"),
                Column("kind", "smallint"),
            ),
            counters=("commits",),
        ),
    ),
    oracle=author_days,
    fold=fold,
    rebuilt_at=(21,),  # 0021: the commit kind joined the key
)
SPEC: MetricSpec = MetricSpec(
    "contributors",
    "Distinct authors (individuals: lower-cased emails regrouped by the identities) per "
    "period: active, new (first commit), returning (after a gap of more than gap_days "
    "days), cumulative",
    "authors",
    version=3,
    sources=(TABLE,),
    params=(
        replace(GRANULARITY, default="month"),
        Param(
            "gap_days",
            "integer",
            DEFAULT_GAP_DAYS,
            "days without a commit before a commit counts as a return",
            ge=0,
            le=36_500,
        ),
        *params(),
        BOTS,
    ),
    org=True,
    writer=WRITER,
    resolve=resolver(),
    route=Route(
        "Active, new, returning and cumulative contributors per period",
        read,
        response="ContributorsOut",
        org_summary="Contributors over repositories (one per individual: GET /api/v1/identities)",
        people=True,
    ),
)
