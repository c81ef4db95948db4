"""A database at an older schema version, for the tests of the migrations after it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from metre.processors import database as database_module
from metre.processors.store import PgStore
from testkit.postgres import create_database, drop_database


@contextlib.asynccontextmanager
async def schema_before(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, version: int
) -> AsyncIterator[tuple[PgStore, str]]:
    """(store, dsn) of a new database migrated up to, not including, migration `version`;
    the migrations after it stay hidden until the test calls `monkeypatch.undo()`. The
    database is dropped afterwards."""
    old = await create_database(pg_dsn)
    before = [m for m in database_module._migrations() if m[0] < version]
    monkeypatch.setattr(database_module, "_migrations", lambda: before)
    s = await PgStore.connect(old, max_size=2)
    try:
        await s.migrate()
        yield s, old
    finally:
        await s.close()
        await drop_database(old)


async def old_repo(s: PgStore, url: str) -> int:
    """Register a repository in a database of an older schema (today's `add_repo` reads
    columns a later migration adds); returns its id."""
    rid: int = await s.pool.fetchval("INSERT INTO repos (url) VALUES ($1) RETURNING id", url)
    return rid
