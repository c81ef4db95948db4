"""Metrics as pure functions from one commit event to deltas, and their folds (pure: no I/O).

Each metric is a typed spec (processors/metrics/spec.py) listed in one registry
(processors/metrics/registry.py); this package gathers what the sink needs from them:
`TABLES`, `FOLDS` and `fold` (the hot path), and `METRICS`, `total` (the oracles).

A delta names a row (table + key) and what to merge into it: counters in `add` are summed, so
redelivery, parallel backfill and retraction (negated deltas) commute; `least` and `greatest`
values are kept at their minimum / maximum, so any order and any duplicates give the same row.
They cannot be retracted by a delta: retraction recomputes them from the facts.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metre.contracts.events import CommitEvent

if TYPE_CHECKING:
    from metre.processors.metrics.spec import Writer
    from metre.processors.metrics.table import MetricTable

Rows = dict[str, dict[tuple[Hashable, ...], list[Any]]]
"""Merged rows by table name, then key: what `fold` builds (see `table.Row`)."""


@dataclass(frozen=True, slots=True)
class Delta:
    """What one event changes in one metric row."""

    table: str
    key: tuple[Hashable, ...]
    add: Mapping[str, int]
    least: Mapping[str, Any] = field(default_factory=dict)
    greatest: Mapping[str, Any] = field(default_factory=dict)


def negate(d: Delta) -> Delta:
    """The delta that undoes `d`'s counters (its least/greatest values cannot be undone)."""
    return Delta(d.table, d.key, {k: -v for k, v in d.add.items()}, d.least, d.greatest)


def merge(deltas: Iterable[Delta]) -> list[Delta]:
    """One delta per (table, key), sorted by table then key: the order writers lock rows in."""
    rows: dict[tuple[str, tuple[Hashable, ...]], Delta] = {}
    for d in deltas:
        ident = (d.table, d.key)
        old = rows.get(ident)
        if old is None:
            rows[ident] = Delta(d.table, d.key, dict(d.add), dict(d.least), dict(d.greatest))
            continue
        add = dict(old.add)
        for k, v in d.add.items():
            add[k] = add.get(k, 0) + v
        least = dict(old.least)
        for k, v in d.least.items():
            least[k] = v if k not in least else min(least[k], v)
        greatest = dict(old.greatest)
        for k, v in d.greatest.items():
            greatest[k] = v if k not in greatest else max(greatest[k], v)
        rows[ident] = Delta(d.table, d.key, add, least, greatest)
    return [rows[i] for i in sorted(rows, key=_sort_key)]


def _sort_key(ident: tuple[str, tuple[Hashable, ...]]) -> tuple[Any, ...]:
    return (ident[0], *ident[1])


def bump(
    table: dict[tuple[Hashable, ...], list[Any]],
    key: tuple[Hashable, ...],
    *add: int,
) -> None:
    """Add counters to one folded row of a counters-only table (the `FOLD`s' common step)."""
    row = table.get(key)
    if row is None:
        table[key] = list(add)
    else:
        for i, v in enumerate(add):
            row[i] += v


Metric = Callable[[CommitEvent], Iterator[Delta]]
"""A metric's pure definition: the deltas one event makes (an oracle: folds must equal it)."""

Fold = Callable[[CommitEvent, Rows], None]
"""Merges one event's effect straight into a batch's `Rows`."""

# The registry imports every metric module, and they import the types above.
from metre.processors.metrics.registry import SPECS as SPECS  # noqa: E402
from metre.processors.metrics.registry import WRITERS as WRITERS  # noqa: E402

METRICS: tuple[Metric, ...] = tuple(w.oracle for w in WRITERS)
"""Every metric's delta function (the oracles), one per writer."""

TABLES: dict[str, MetricTable] = {t.name: t for w in WRITERS for t in w.tables}
"""Every metric table spec (`table.MetricTable`) by table name: what the store upserts."""

FOLDS: tuple[Fold, ...] = tuple(w.folder for w in WRITERS)
"""One fold per writer (`spec.Writer.folder`), in registry order."""

FOLD_OF: dict[str, Fold] = {w.name: f for w, f in zip(WRITERS, FOLDS, strict=True)}
"""The fold of each writer, by its name."""

WRITER_OF: dict[str, Writer] = {t.name: w for w in WRITERS for t in w.tables}
"""The writer of each metric table, by table name."""


def folds_of(tables: Iterable[str]) -> tuple[Fold, ...]:
    """The folds of the writers of `tables` (each writer's fold writes all of its tables)."""
    names = {WRITER_OF[t].name for t in tables}
    return tuple(FOLD_OF[w.name] for w in WRITERS if w.name in names)


def deltas(events: Iterable[CommitEvent], metrics: Iterable[Metric] = METRICS) -> Iterator[Delta]:
    """All deltas of `events` under `metrics`, unmerged."""
    ms = tuple(metrics)
    for e in events:
        for m in ms:
            yield from m(e)


def total(events: Iterable[CommitEvent], metrics: Iterable[Metric] = METRICS) -> list[Delta]:
    """The merged effect of `events`: what the metric tables hold after applying them."""
    return merge(deltas(events, metrics))


def fold(events: Iterable[CommitEvent], folds: Iterable[Fold] = FOLDS) -> Rows:
    """The merged effect of `events` as rows per table (tables without rows left out): the
    same rows as `total`, without building a `Delta` per row, in no particular order."""
    fs = tuple(folds)
    rows: Rows = {name: {} for name in TABLES}
    # A batch makes hundreds of thousands of small rows and keys, none in a reference cycle;
    # with the cyclic collector on, its collections walk them over and over (about half the
    # fold's time on a large batch). Nothing here awaits, so no other task runs meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for e in events:
            for f in fs:
                f(e, rows)
    finally:
        if collecting:
            gc.enable()
    return {name: r for name, r in rows.items() if r}
