"""Migration 0021 (the commit kind in the per-commit metric tables) on a database that already
holds commits: the tables are rebuilt from the facts exactly as a processor would have written
them (real PostgreSQL)."""

from __future__ import annotations

import asyncpg
import pytest

from metre.processors.rebuild import COMMIT_KIND_TABLES
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


async def test_0021_rebuilds_the_tables_from_the_facts(
    store: PgStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = (await store.add_repo("https://e.org/a.git", None)).id
    await store.add_repo("https://e.org/b.git", None)
    events = without_blobs(_events((rid, rid + 1), 400, seed=21))  # facts stored before 0025
    await store.apply(events)
    assert any(not e.files and not e.is_merge for e in events)  # empty commits
    assert any(e.is_merge for e in events)

    async with schema_before(pg_dsn, monkeypatch, 21) as (s, old):
        ids = [await old_repo(s, f"https://e.org/{n}.git") for n in "ab"]
        assert ids == [rid, rid + 1]
        con = await asyncpg.connect(old)
        try:
            # The facts as a processor before 0021 stored them, and a stale metric row of the
            # old shape (the rebuild must not keep it).
            await con.execute(LEGACY_INSERT_COMMITS, *legacy_commit_arrays(events))
            await con.execute(LEGACY_INSERT_FILES, *legacy_file_arrays(events)[:8])
            await con.execute(
                "INSERT INTO activity_daily (repo_id, day, commits) VALUES ($1, '1999-01-01', 7)",
                rid,
            )
            assert "kind" not in {
                r["column_name"]
                for r in await con.fetch(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'activity_daily'"
                )
            }
        finally:
            await con.close()
        # Every later migration too: rebuilds run after the last one, as today's code (the
        # other migrations have their own tests).
        monkeypatch.undo()
        assert (await s.migrate())[0] == "0021_commit_kind.sql"
        got, want = await dump(old), await dump(store._dsn)
        for table in COMMIT_KIND_TABLES:
            assert got[table], table
            assert got[table] == want[table], differences({table: got[table]}, {table: want[table]})
