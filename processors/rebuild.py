"""Rebuild metric tables from the facts (I/O, inside the caller's transaction).

For a migration that changes a metric table's key in a way SQL cannot derive from the old
rows (0021: the commit kind): the tables are emptied and every stored commit is folded again
by the metrics' own code, a chunk at a time, so the rows are exactly what the processors
would have written had the new key always been there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from processors.metrics import TABLES, fold, folds_of
from processors.retract import _COMMIT_COLUMNS, load_events

Connection = Any  # asyncpg.Connection or a pool's connection proxy

CHUNK = 5000
"""Commits loaded and folded at a time (their file changes come along)."""

_NEXT = f"""
SELECT {_COMMIT_COLUMNS} FROM commits c
WHERE (c.repo_id, c.sha) > ($1, $2)
ORDER BY c.repo_id, c.sha
LIMIT $3
"""  # noqa: S608 (constant)


async def rebuild(con: Connection, tables: set[str]) -> int:
    """Empty `tables` and fold every stored commit into them again; returns the commits read.

    The writers of them must write no other table (their other rows would be counted
    twice).
    """
    folds = folds_of(tables)
    for name in sorted(tables):
        await con.execute(f"DELETE FROM {name}")  # noqa: S608 (a metric table's name)
    upserts = {name: TABLES[name].upsert_sql() for name in tables}
    after: tuple[int, str] = (0, "")
    seen = 0
    while True:
        recs = await con.fetch(_NEXT, after[0], after[1], CHUNK)
        if not recs:
            return seen
        seen += len(recs)
        after = (recs[-1]["repo_id"], recs[-1]["sha"])
        rows = fold(await load_events(con, recs), folds)
        for name in sorted(rows):
            if name not in tables:
                raise ValueError(f"rebuilding {sorted(tables)} would also write {name}")
            await con.execute(upserts[name], *TABLES[name].rows_arrays(rows[name]))


Step = Callable[[Connection], Awaitable[object]]

COMMIT_KIND_TABLES = {"activity_daily", "author_totals", "author_days", "punchcard", "commit_sizes"}


async def _commit_kind(con: Connection) -> None:
    await rebuild(con, COMMIT_KIND_TABLES)


LANGUAGE_TABLES = {"language_lines", "language_merge_lines", "file_merge_lines"}
"""0023: languages by Linguist's rules (the merges module writes both merge tables)."""


async def _linguist(con: Connection) -> None:
    await rebuild(con, LANGUAGE_TABLES)


AFTER_MIGRATION: dict[int, Step] = {
    21: _commit_kind,
    23: _linguist,
    25: _linguist,
    26: _linguist,
}
"""Migration version -> what runs after the pending migrations' SQL, in the same transaction
(once per step: 0023, 0025 and 0026 rebuild the same tables; 0025 because the language tables
gain binary changes and bytes, counted from the facts; 0026 because file_merge_lines gains lines
of code and their unknown count, from the facts' merge files)."""
