"""Rebuild metric tables from the facts (I/O, inside the caller's transaction).

For a migration that creates a metric table, or changes one in a way SQL cannot derive from
the old rows (0021: the commit kind): the tables are emptied and every stored commit is folded
again by the metrics' own folds, a chunk at a time, so the rows are exactly what the
processors would have written had the table always been so. Which migrations rebuild which
tables is declared by each writer (`spec.Writer.rebuilt_at`). Also the steps of migrations that
need Python's own computation on the facts (0031: the authors' identity keys).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from metre.processors.emailkey import email_key
from metre.processors.metrics import TABLES, WRITERS, fold, folds_of
from metre.processors.retract import _COMMIT_COLUMNS, load_events

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


def tables_rebuilt_at(version: int) -> set[str]:
    """The tables of the writers that declare a rebuild after migration `version`."""
    return {t for w in WRITERS if version in w.rebuilt_at for t in w.table_names}


def _steps() -> dict[int, Step]:
    made: dict[frozenset[str], Step] = {}

    def step(tables: frozenset[str]) -> Step:
        async def rebuild_tables(con: Connection) -> None:
            await rebuild(con, set(tables))

        return made.setdefault(tables, rebuild_tables)

    versions = sorted({v for w in WRITERS for v in w.rebuilt_at})
    return {v: step(frozenset(tables_rebuilt_at(v))) for v in versions}


async def _author_keys(con: Connection) -> None:
    """0031: the identity key of every stored commit's author, by the one function that keys
    them (processors/emailkey.py), once per distinct email."""
    emails = [
        r["author_email"] for r in await con.fetch("SELECT DISTINCT author_email FROM commits")
    ]
    await con.execute(
        "UPDATE commits c SET author_key = k.key"
        " FROM unnest($1::text[], $2::text[]) AS k(email, key) WHERE c.author_email = k.email",
        emails,
        [email_key(e) for e in emails],
    )
    await con.execute("ALTER TABLE commits ALTER COLUMN author_key SET NOT NULL")


AFTER_MIGRATION: dict[int, Step] = dict(sorted({**_steps(), 31: _author_keys}.items()))
"""Migration version -> what runs after the pending migrations' SQL, in the same transaction:
the rebuilds the writers declare with `rebuilt_at` (once per step: the same tables make the
same step, so 0023, 0025 and 0026 rebuild the language tables once), and 0031's keys (a column
of the facts that no rebuild reads)."""

COMMIT_KIND_TABLES = tables_rebuilt_at(21)
"""0021: the commit kind joined the per-commit tables' keys."""

LANGUAGE_TABLES = tables_rebuilt_at(23)
"""0023: languages by Linguist's rules (the merges writer writes both merge tables); 0025
added binary changes and bytes, 0026 file_merge_lines' lines of code, both from the facts."""
