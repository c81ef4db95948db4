"""Migration 0026 (lines of code at head) on a database that already holds commits with the
other blob measures: every stored contribution's lines of code count as unknown, exactly as a
processor now counts an event without them, and every repository with commits is marked for
its history to be published again (real PostgreSQL)."""

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
from tests.processors.migrating import old_repo, schema_before
from tests.processors.test_commutativity import _events, without_code

pytestmark = pytest.mark.integration

_INSERT_FILES_0025 = """
INSERT INTO file_changes (repo_id, sha, seq, path, added, removed, is_binary, change,
                          blob_bytes, blob_binary, blob_text_bytes)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::bool[], $8::text[], $9::bigint[], $10::smallint[],
                     $11::bigint[])
"""
_STATS_0025 = (
    "repo_id, path, commits, added, removed, presence, binary_changes, blob_bytes, blob_binary, "
    "blob_text_bytes, blob_unknown, last_change_at, last_binary"
)


async def test_0026_counts_stored_code_as_unknown_and_marks_the_repositories(
    store: PgStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = (await store.add_repo("https://e.org/a.git", None)).id
    empty = (await store.add_repo("https://e.org/empty.git", None)).id
    events = without_code(_events((rid,), 300, seed=26))
    await store.apply(events)
    assert any(e.merge_files for e in events)
    want = await dump(store._dsn)

    async with schema_before(pg_dsn, monkeypatch, 26) as (s, old):
        assert await old_repo(s, "https://e.org/a.git") == rid
        assert await old_repo(s, "https://e.org/empty.git") == empty
        con = await asyncpg.connect(old)
        try:
            await con.execute(LEGACY_INSERT_COMMITS, *legacy_commit_arrays(events))
            await con.execute(_INSERT_FILES_0025, *legacy_file_arrays(events)[:11])
            # file_stats as a processor before 0026 wrote it (the merge tables are rebuilt).
            cols = [c.strip() for c in _STATS_0025.split(",")]
            rows = [tuple(r[c] for c in cols) for r in want["file_stats"]]
            assert rows
            values = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
            await con.executemany(
                f"INSERT INTO file_stats ({_STATS_0025}) VALUES ({values})",
                rows,
            )
        finally:
            await con.close()
        monkeypatch.undo()
        assert await s.migrate() == [
            name for v, name, _ in database_module._migrations() if v >= 26
        ]
        got = await dump(old)
        for table in {"file_stats", "file_changes", "commits"} | LANGUAGE_TABLES:
            assert got[table], table
            assert got[table] == want[table], differences({table: got[table]}, {table: want[table]})
        assert all(r["code_unknown"] == r["commits"] for r in got["file_stats"])
        assert all(r["blob_code"] == 0 for r in got["file_stats"])
        marked = await s.get_repo(rid)
        assert marked is not None
        assert marked.mailmap_sha == REPUBLISH
        untouched = await s.get_repo(empty)
        assert untouched is not None
        assert untouched.mailmap_sha is None
