"""Dump every fact and metric table of a database as plain sorted data, to compare two
databases (an incrementally maintained one and a fresh ingest) table by table (I/O)."""

from __future__ import annotations

from typing import Any

import asyncpg

from metre.processors.metrics import TABLES

FACTS: dict[str, tuple[str, ...]] = {
    "commits": ("repo_id", "sha"),
    "file_changes": ("repo_id", "sha", "seq"),
}
_VOLATILE = frozenset({"ingested_at"})


def table_keys() -> dict[str, tuple[str, ...]]:
    """Every table `apply` writes, with its key columns: the facts and every metric table."""
    keys = dict(FACTS)
    keys.update({name: tuple(c.name for c in t.key) for name, t in TABLES.items()})
    return keys


async def dump(dsn: str) -> dict[str, list[dict[str, Any]]]:
    """table -> rows (dicts, volatile columns left out) ordered by key, for every table."""
    con = await asyncpg.connect(dsn)
    try:
        out: dict[str, list[dict[str, Any]]] = {}
        for table, key in table_keys().items():
            order = ", ".join(key)  # a primary key: a total order, the same in both
            rows = await con.fetch(f"SELECT * FROM {table} ORDER BY {order}")
            out[table] = [{k: v for k, v in r.items() if k not in _VOLATILE} for r in rows]
        return out
    finally:
        await con.close()


def differences(
    got: dict[str, list[dict[str, Any]]], want: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Per table that differs: rows only in `got`, rows only in `want` (a readable failure)."""
    out: dict[str, Any] = {}
    for table in sorted(got.keys() | want.keys()):
        g, w = got.get(table, []), want.get(table, [])
        if g != w:
            extra = [r for r in g if r not in w][:5]
            missing = [r for r in w if r not in g][:5]
            out[table] = {"extra": extra, "missing": missing, "rows": (len(g), len(w))}
    return out
