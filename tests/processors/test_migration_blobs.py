"""Migration 0025 (blob measures at head) on a database that already holds commits: every
stored contribution counts as unknown, exactly as a processor now counts an event without
measures, and every repository with commits is marked for its history to be published again
(real PostgreSQL)."""

from __future__ import annotations

import asyncpg
import pytest

from metre.processors import database as database_module
from metre.processors.rebuild import LANGUAGE_TABLES
from metre.processors.sink import REPUBLISH
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

_OLD_STATS = (
    "repo_id, path, commits, added, removed, presence, binary_changes, last_change_at, last_binary"
)


async def test_0025_counts_stored_contributions_as_unknown_and_marks_the_repositories(
    store: PgStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = (await store.add_repo("https://e.org/a.git", None)).id
    empty = (await store.add_repo("https://e.org/empty.git", None)).id
    events = without_blobs(_events((rid,), 300, seed=25))
    await store.apply(events)
    assert any(e.merge_files for e in events)
    want = await dump(store._dsn)

    async with schema_before(pg_dsn, monkeypatch, 25) as (s, old):
        assert await old_repo(s, "https://e.org/a.git") == rid
        assert await old_repo(s, "https://e.org/empty.git") == empty
        con = await asyncpg.connect(old)
        try:
            await con.execute(LEGACY_INSERT_COMMITS, *legacy_commit_arrays(events))
            await con.execute(LEGACY_INSERT_FILES, *legacy_file_arrays(events)[:8])
            # file_stats as a processor before 0025 wrote it (the other tables are rebuilt).
            rows = [tuple(r[c.strip()] for c in _OLD_STATS.split(",")) for r in want["file_stats"]]
            assert rows
            values = ", ".join(f"${i}" for i in range(1, 10))
            await con.executemany(f"INSERT INTO file_stats ({_OLD_STATS}) VALUES ({values})", rows)
        finally:
            await con.close()
        monkeypatch.undo()
        assert await s.migrate() == [
            name for v, name, _ in database_module._migrations() if v >= 25
        ]
        got = await dump(old)
        for table in {"file_stats", "file_changes", "commits"} | LANGUAGE_TABLES:
            assert got[table], table
            assert got[table] == want[table], differences({table: got[table]}, {table: want[table]})
        assert all(r["blob_unknown"] == r["commits"] for r in got["file_stats"])
        marked = await s.get_repo(rid)
        assert marked is not None
        assert marked.mailmap_sha == REPUBLISH
        untouched = await s.get_repo(empty)
        assert untouched is not None
        assert untouched.mailmap_sha is None
