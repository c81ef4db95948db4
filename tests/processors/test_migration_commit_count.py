"""Migration 0030 (the registry's count of commits kept in the repository row) on a database
that already holds commits: each repository's count starts at its stored facts, the number
the registry served before, and the sink keeps it from there (real PostgreSQL)."""

from __future__ import annotations

import asyncpg
import pytest

from metre.contracts.events import RetractEvent
from metre.processors.store import PgStore
from tests.fixtures.legacyfacts import (
    LEGACY_INSERT_COMMITS,
    LEGACY_INSERT_FILES_0026,
    legacy_commit_arrays,
    legacy_file_arrays,
)
from tests.processors.migrating import old_repo, schema_before
from tests.processors.test_commutativity import _events

pytestmark = pytest.mark.integration


async def test_0030_counts_the_stored_commits_and_the_sink_keeps_the_count(
    store: PgStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = (await store.add_repo("https://e.org/a.git", None)).id
    empty = (await store.add_repo("https://e.org/empty.git", None)).id
    events = _events((rid,), 120, seed=30)
    await store.apply(events)
    fresh = {r.id: r.commits for r in await store.list_repos()}
    assert fresh == {rid: len(events), empty: 0}

    async with schema_before(pg_dsn, monkeypatch, 30) as (s, old):
        assert await old_repo(s, "https://e.org/a.git") == rid
        assert await old_repo(s, "https://e.org/empty.git") == empty
        con = await asyncpg.connect(old)
        try:
            await con.execute(LEGACY_INSERT_COMMITS, *legacy_commit_arrays(events))
            await con.execute(LEGACY_INSERT_FILES_0026, *legacy_file_arrays(events))
        finally:
            await con.close()
        monkeypatch.undo()
        assert (await s.migrate())[0] == "0030_repo_commit_count.sql"  # and any later ones
        assert {r.id: r.commits for r in await s.list_repos()} == fresh
        gone = [RetractEvent(rid, e.sha) for e in events[:7]]
        await s.apply([*gone, *gone, events[0]])
        row = await s.get_repo(rid)
        assert row is not None
        assert row.commits == len(events) - 6
