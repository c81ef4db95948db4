"""Metric table specs and the SQL that merges deltas into them (pure: builds SQL, runs none).

A metric declares its table next to its function as a `MetricTable`: key columns, counter
columns (summed), and extreme columns (kept at their least / greatest). The store turns any
spec into one `unnest` upsert whose rows arrive merged and sorted by key, so a new metric table
needs a migration and a spec, never an edit of the store.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from metre.processors.metrics import Delta

Key = tuple[Hashable, ...]
Row = list[Any]
"""A merged row without its key: its counters in `MetricTable.counters` order, then one value
per extreme (a tuple for a multi-column extreme). Metric folds (`fold` in metre.processors.metrics)
build these directly, without `Delta` objects."""


@dataclass(frozen=True, slots=True)
class Column:
    """One SQL column: name, PostgreSQL type, and an optional collation for comparisons."""

    name: str
    sql_type: str
    collate: str | None = None


@dataclass(frozen=True, slots=True)
class Extreme:
    """A value kept at its least or greatest over every delta, stored in `columns`.

    The delta carries it under `field`: a scalar for one column, a tuple compared
    lexicographically for several (e.g. the latest (time, name) pair; with collation "C"
    PostgreSQL compares text by code point, as Python does).
    """

    field: str
    kind: Literal["least", "greatest"]
    columns: tuple[Column, ...]

    def values(self, d: Delta) -> tuple[Any, ...]:
        source = d.least if self.kind == "least" else d.greatest
        v = source[self.field]
        return (v,) if len(self.columns) == 1 else tuple(v)


@dataclass(frozen=True, slots=True)
class MetricTable:
    """An additive metric table: rows keyed by `key`, merged by summing `counters` (bigint)
    and keeping `extremes` at their least/greatest. The first key column is the repo_id."""

    name: str
    key: tuple[Column, ...]
    counters: tuple[str, ...] = ()
    extremes: tuple[Extreme, ...] = ()

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column in upsert order: key, counters, then each extreme's columns."""
        counters = tuple(Column(c, "bigint") for c in self.counters)
        return (*self.key, *counters, *(c for x in self.extremes for c in x.columns))

    def row(self, d: Delta) -> tuple[Any, ...]:
        """The upsert's values for one merged delta, in `columns` order."""
        return (
            *d.key,
            *(d.add[c] for c in self.counters),
            *(v for x in self.extremes for v in x.values(d)),
        )

    def arrays(self, deltas: Sequence[Delta]) -> list[list[Any]]:
        """Column arrays for the upsert's `unnest` parameters."""
        rows = [self.row(d) for d in deltas]
        return [list(col) for col in zip(*rows, strict=True)] if rows else []

    def fold(self, rows: dict[Key, Row], d: Delta) -> None:
        """Merge one delta into `rows` (key -> `Row`), exactly as `merge` would."""
        row = rows.get(d.key)
        if row is None:
            rows[d.key] = [
                *(d.add[c] for c in self.counters),
                *((d.least if x.kind == "least" else d.greatest)[x.field] for x in self.extremes),
            ]
            return
        for i, c in enumerate(self.counters):
            row[i] += d.add[c]
        for i, x in enumerate(self.extremes, len(self.counters)):
            # Like min(old, v) / max(old, v): the old value stays unless strictly passed.
            if x.kind == "least":
                v = d.least[x.field]
                if v < row[i]:
                    row[i] = v
            else:
                v = d.greatest[x.field]
                if v > row[i]:
                    row[i] = v

    def negated(self, row: Row) -> Row:
        """The folded row that undoes `row`'s counters (its extremes cannot be undone: they are
        kept, and retraction recomputes them from the remaining facts)."""
        n = len(self.counters)
        return [*(-v for v in row[:n]), *row[n:]]

    def delta(self, key: Key, row: Row) -> Delta:
        """The `Delta` a folded row stands for (the inverse of `fold` on one row)."""
        n = len(self.counters)
        least = {x.field: row[i] for i, x in enumerate(self.extremes, n) if x.kind == "least"}
        most = {x.field: row[i] for i, x in enumerate(self.extremes, n) if x.kind == "greatest"}
        return Delta(self.name, key, dict(zip(self.counters, row[:n], strict=True)), least, most)

    def rows_arrays(self, rows: dict[Key, Row]) -> list[list[Any]]:
        """Column arrays for the upsert's `unnest` parameters from folded rows (in any order:
        the upsert sorts them by key)."""
        if not rows:
            return []
        if any(len(x.columns) > 1 for x in self.extremes):
            n = len(self.counters)
            wide = [i for i, x in enumerate(self.extremes, n) if len(x.columns) > 1]
            flat = []
            for k, r in rows.items():
                r = list(r)
                for i in reversed(wide):
                    r[i : i + 1] = r[i]
                flat.append((*k, *r))
        else:
            flat = [(*k, *r) for k, r in rows.items()]
        return [list(col) for col in zip(*flat, strict=True)]

    def upsert_sql(self) -> str:
        """INSERT ... SELECT FROM unnest(...) ORDER BY key ON CONFLICT (key) DO UPDATE."""
        cols = self.columns
        names = ", ".join(c.name for c in cols)
        params = ", ".join(f"${i}::{c.sql_type}[]" for i, c in enumerate(cols, 1))
        key = ", ".join(c.name for c in self.key)
        sets = [f"{c} = m.{c} + EXCLUDED.{c}" for c in self.counters]
        for x in self.extremes:
            sets.extend(_extreme_sets(x))
        action = "DO UPDATE SET " + ", ".join(sets) if sets else "DO NOTHING"
        return (
            f"INSERT INTO {self.name} AS m ({names})\n"
            f"SELECT * FROM unnest({params}) AS t({names})\n"
            f"ORDER BY {key}\n"
            f"ON CONFLICT ({key}) {action}"
        )


def _cmp(prefix: str, c: Column) -> str:
    return f'{prefix}.{c.name} COLLATE "{c.collate}"' if c.collate else f"{prefix}.{c.name}"


def _extreme_sets(x: Extreme) -> list[str]:
    fn = "LEAST" if x.kind == "least" else "GREATEST"
    if len(x.columns) == 1:
        (c,) = x.columns
        return [f"{c.name} = {fn}(m.{c.name}, EXCLUDED.{c.name})"]
    op = "<" if x.kind == "least" else ">"
    new = ", ".join(_cmp("EXCLUDED", c) for c in x.columns)
    old = ", ".join(_cmp("m", c) for c in x.columns)
    return [
        f"{c.name} = CASE WHEN ({new}) {op} ({old}) THEN EXCLUDED.{c.name} ELSE m.{c.name} END"
        for c in x.columns
    ]
