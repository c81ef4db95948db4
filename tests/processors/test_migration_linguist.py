"""Migration 0023 (languages by Linguist's rules) on a database that already holds commits:
the language tables are rebuilt from the facts exactly as a processor now writes them, and rows
keyed by Pygments' names are gone (real PostgreSQL)."""

from __future__ import annotations

import asyncpg
import pytest

from metre.processors.rebuild import LANGUAGE_TABLES
from metre.processors.store import PgStore
from testkit.dump import differences, dump
from tests.fixtures.legacyfacts import (
    LEGACY_INSERT_COMMITS,
    legacy_commit_arrays,
    legacy_file_arrays,
)
from tests.fixtures.postgres import LEGACY_INSERT_FILES
from tests.processors.migrating import old_repo, schema_before
from tests.processors.test_commutativity import _events, without_blobs

pytestmark = pytest.mark.integration


async def test_0023_rebuilds_the_language_tables(
    store: PgStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = (await store.add_repo("https://e.org/a.git", None)).id
    events = without_blobs(_events((rid,), 300, seed=23))  # facts stored before 0025
    await store.apply(events)
    assert any(e.merge_files for e in events)

    async with schema_before(pg_dsn, monkeypatch, 23) as (s, old):
        assert await old_repo(s, "https://e.org/a.git") == rid
        con = await asyncpg.connect(old)
        try:
            await con.execute(LEGACY_INSERT_COMMITS, *legacy_commit_arrays(events))
            await con.execute(LEGACY_INSERT_FILES, *legacy_file_arrays(events)[:8])
            # What version 2 wrote: Pygments' names, every text file counted.
            await con.execute(
                "INSERT INTO language_lines (repo_id, language, changes, added, removed)"
                " VALUES ($1, 'Transact-SQL', 3, 30, 1), ($1, 'Markdown', 2, 5, 0)",
                rid,
            )
            await con.execute(
                "INSERT INTO language_merge_lines (repo_id, language, merges, lines)"
                " VALUES ($1, 'POVRay', 1, 4)",
                rid,
            )
        finally:
            await con.close()
        monkeypatch.undo()
        assert (await s.migrate())[0] == "0023_linguist_languages.sql"  # and any later ones
        got, want = await dump(old), await dump(store._dsn)
        for table in LANGUAGE_TABLES:
            assert got[table], table
            assert got[table] == want[table], differences({table: got[table]}, {table: want[table]})
