"""Punch card: commits by weekday and hour of the author's own local time (pure).

Like GitHub's punch card, but in the time zone each author committed in (the offset recorded in
the author date), so "late at night" means late for the person. Weekday 0 is Monday. Rows are
per commit kind (processors/metrics/policy.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta, Rows, bump
from metre.processors.metrics.policy import kind, of, params, resolver
from metre.processors.metrics.spec import MetricSpec, Route, Writer
from metre.processors.metrics.table import Column, MetricTable

TABLE = "punchcard"


def punchcard(e: CommitEvent) -> Iterator[Delta]:
    """One `punchcard` row per (repo, local weekday, local hour, commit kind)."""
    t = e.author.time  # keeps the author's offset
    yield Delta(TABLE, (e.repo_id, t.weekday(), t.hour, kind(e)), {"commits": 1})


def fold(e: CommitEvent, rows: Rows) -> None:
    """`punchcard`'s delta merged straight into `rows`."""
    t = e.author.time
    bump(rows[TABLE], (e.repo_id, t.weekday(), t.hour, kind(e)), 1)


def grid(cells: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    """7 rows (Monday first) of 24 hourly counts, from (weekday, hour, commits) cells."""
    out = [[0] * 24 for _ in range(7)]
    for weekday, hour, commits in cells:
        out[weekday][hour] += commits
    return out


def result(cells: Iterable[tuple[int, int, int]]) -> dict[str, Any]:
    g = grid(cells)
    return {"total": sum(map(sum, g)), "commits": g}


async def read(store: Any, ids: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
    from metre.processors import reads  # deferred: the reads import the store, which imports this

    return result(await reads.punchcard(store, ids, of(p)))


WRITER: Writer = Writer(
    "punchcard",
    tables=(
        MetricTable(
            TABLE,
            key=(
                Column("repo_id", "bigint"),
                Column("weekday", "smallint"),
                Column("hour", "smallint"),
                Column("kind", "smallint"),
            ),
            counters=("commits",),
        ),
    ),
    oracle=punchcard,
    fold=fold,
    rebuilt_at=(21,),  # 0021: the commit kind joined the key
)
SPEC: MetricSpec = MetricSpec(
    "punchcard",
    "Commits by weekday (0 = Monday) and hour of the author's own local time",
    "commits",
    version=2,
    sources=(TABLE,),
    params=params(),
    org=True,
    writer=WRITER,
    resolve=resolver(),
    route=Route(
        "Commits by weekday (0 = Monday) and hour, in the author's own time zone",
        read,
        response="PunchcardOut",
        org_summary="Punch card over repositories",
    ),
)
