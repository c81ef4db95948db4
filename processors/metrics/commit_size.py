"""Commit size: the distribution of files and lines changed per non-merge commit (pure).

`commit_sizes` holds the exact distribution (how many commits had each size), which is
additive; percentiles and the histogram are derived from it on read by `summary`.
Lines changed = lines added + lines removed; binary files count as files with no lines.
Rows are per commit kind (processors/metrics/policy.py); merges are kept too (as numstat shows
them: no files, no lines) and left out by the default read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta, Rows, bump
from metre.processors.metrics.policy import COMMIT_SIZE_DEFAULT, kind, of, params, resolver
from metre.processors.metrics.spec import MetricSpec, Route, Writer
from metre.processors.metrics.table import Column, MetricTable

TABLE = "commit_sizes"
MEASURES = ("files", "lines")
PERCENTILES = (50, 75, 90, 99)


def commit_size(e: CommitEvent) -> Iterator[Delta]:
    """Two `commit_sizes` rows per commit (files changed, lines changed), keyed by kind."""
    k = kind(e)
    yield Delta(TABLE, (e.repo_id, "files", len(e.files), k), {"commits": 1})
    yield Delta(TABLE, (e.repo_id, "lines", e.added + e.removed, k), {"commits": 1})


def fold(e: CommitEvent, rows: Rows) -> None:
    """`commit_size`'s deltas merged straight into `rows`."""
    k = kind(e)
    table = rows[TABLE]
    bump(table, (e.repo_id, "files", len(e.files), k), 1)
    bump(table, (e.repo_id, "lines", e.added + e.removed, k), 1)


def nearest_rank(dist: Mapping[int, int], p: float) -> int | None:
    """The p-th percentile by the nearest-rank method: the smallest value v such that at least
    p% of the observations are <= v, i.e. the ceil(p/100 * n)-th smallest (the smallest for
    p = 0); None when there are no observations. `dist` maps value -> count (>= 0)."""
    n = sum(dist.values())
    if n <= 0:
        return None
    rank = max(1, math.ceil(p * n / 100))
    seen = 0
    for value in sorted(dist):
        seen += dist[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable")


def bin_of(value: int) -> tuple[int, int]:
    """The histogram bin of `value`: [0, 0], then powers of two [2^k, 2^(k+1) - 1]."""
    if value <= 0:
        return (0, 0)
    lo = 1 << (value.bit_length() - 1)
    return (lo, 2 * lo - 1)


def histogram(dist: Mapping[int, int]) -> list[dict[str, int]]:
    """Counts per bin from [0, 0] up to the bin of the largest value, empty bins included."""
    counts: dict[tuple[int, int], int] = {}
    for value, n in dist.items():
        if n:
            b = bin_of(value)
            counts[b] = counts.get(b, 0) + n
    if not counts:
        return []
    bins, top = [(0, 0)], max(counts)
    while bins[-1] < top:
        lo = max(1, 2 * bins[-1][0])
        bins.append((lo, 2 * lo - 1))
    return [{"min": lo, "max": hi, "commits": counts.get((lo, hi), 0)} for lo, hi in bins]


def summary(rows: Iterable[tuple[str, int, int]]) -> dict[str, Any]:
    """From (measure, value, commits) rows: per measure, the commit count, mean (float),
    percentiles and histogram."""
    dists: dict[str, dict[int, int]] = {m: {} for m in MEASURES}
    for measure, value, n in rows:
        d = dists[measure]
        d[value] = d.get(value, 0) + n
    out: dict[str, Any] = {}
    for m, d in dists.items():
        n = sum(d.values())
        out[m] = {
            "commits": n,
            "mean": (sum(v * c for v, c in d.items()) / n) if n else None,
            "percentiles": {f"p{p}": nearest_rank(d, p) for p in PERCENTILES},
            "histogram": histogram(d),
        }
    return out


async def read(store: Any, ids: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
    from metre.processors import reads  # deferred: the reads import the store, which imports this

    return summary(await reads.commit_sizes(store, ids, of(p)))


WRITER: Writer = Writer(
    "commit_size",
    tables=(
        MetricTable(
            TABLE,
            key=(
                Column("repo_id", "bigint"),
                Column("measure", "text"),
                Column("value", "bigint"),
                Column("kind", "smallint"),
            ),
            counters=("commits",),
        ),
    ),
    oracle=commit_size,
    fold=fold,
    rebuilt_at=(21,),  # 0021: the commit kind joined the key
)
SPEC: MetricSpec = MetricSpec(
    "commit-size",
    "Distribution over commits (default: non-merge commits; merges count as numstat shows "
    "them, 0 files and 0 lines) of files changed and lines changed (added + removed): mean, "
    "nearest-rank percentiles 50/75/90/99, power-of-two histogram",
    "files; lines",
    version=2,
    sources=(TABLE,),
    params=params(COMMIT_SIZE_DEFAULT),
    org=True,
    writer=WRITER,
    resolve=resolver(COMMIT_SIZE_DEFAULT),
    route=Route(
        "Files and lines changed per non-merge commit: percentiles and histogram",
        read,
        response="CommitSizeOut",
        org_summary="Commit size distribution over repositories",
    ),
)
