"""The database itself (I/O): the connection pool, migrations and the schema checks.

Every other part of the store (processors/registry.py, sink.py, antientropy.py,
deadletters.py, commitreads.py) is a `Database` over the same pool, so one process may hold
just the part it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Self

import asyncpg

from metre.processors.rebuild import AFTER_MIGRATION

_MIGRATION_LOCK = 0x6D65747265  # "metre": serialises migrations across processes


class SchemaTooNew(Exception):
    """The database holds migrations this code does not know: a newer metre migrated it."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"schema version {found} is newer than this code's {known}")
        self.found = found
        self.known = known


class SchemaNotCurrent(Exception):
    """The database's schema is not the one this code was written for (`kind`: `missing`,
    `older`, `newer` or `unknown`); `found`/`known` are the newest versions on each side."""

    def __init__(self, kind: str, found: int, known: int, unknown: Sequence[str] = ()) -> None:
        super().__init__(f"schema {kind}: database at {found}, code at {known}")
        self.kind = kind
        self.found = found
        self.known = known
        self.unknown = list(unknown)


def schema_problem(done: dict[int, str], known: dict[int, str]) -> SchemaNotCurrent | None:
    """What is wrong with a database that applied `done` (version -> file) for code that has
    `known`, or None when they are the same (pure)."""
    newest = max(known)
    if not done:
        return SchemaNotCurrent("missing", 0, newest)
    found = max(done)
    strange = sorted(n for v, n in done.items() if known.get(v) != n and v <= newest)
    if strange:
        return SchemaNotCurrent("unknown", found, newest, strange)
    if found > newest:
        return SchemaNotCurrent("newer", found, newest)
    if set(done) != set(known):
        return SchemaNotCurrent("older", found, newest)
    return None


def _migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of processors/migrations/NNNN_*.sql, in version order."""
    found = []
    for f in (resources.files("metre.processors") / "migrations").iterdir():
        if f.name.endswith(".sql") and f.name[:4].isdigit():
            found.append((int(f.name[:4]), f.name, f.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """metre's PostgreSQL over an asyncpg pool. Build with `await Database.connect(dsn)` (or
    the same on any part)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> Self:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(pool, dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for read modules (processors/reads.py)."""
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction; returns the files applied.

        An advisory lock makes processes that start at the same time take turns. A database
        migrated by a newer metre (a version this code does not know) raises `SchemaTooNew`
        and changes nothing.
        """
        applied: list[str] = []
        async with self._pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
            known = _migrations()
            newest = max(v for v, _, _ in known)
            if done and max(done) > newest:
                raise SchemaTooNew(max(done), newest)
            steps = []
            for version, name, sql in known:
                if version in done:
                    continue
                await con.execute(sql)
                # A step SQL cannot do (processors/rebuild.py), run after the last file: it is
                # today's code, which reads and writes today's columns. Steps are rebuilds of
                # tables from the facts, so running one later in the transaction is the same.
                step = AFTER_MIGRATION.get(version)
                if step is not None and step not in steps:
                    steps.append(step)
                await con.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
                applied.append(name)
            for step in steps:
                await step(con)
        return applied

    async def check_schema(self) -> None:
        """Raise `SchemaNotCurrent` unless the database holds exactly this code's migrations
        (distributed roles never migrate: `metre migrate` does, once, before them)."""
        known = {version: name for version, name, _ in _migrations()}
        async with self._pool.acquire() as con:
            exists = await con.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
            rows = await con.fetch("SELECT version, name FROM schema_migrations") if exists else []
        done = {int(r["version"]): str(r["name"]) for r in rows}
        problem = schema_problem(done, known)
        if problem is not None:
            raise problem

    async def ping(self) -> bool:
        """Whether the database answers a query within 2 seconds."""
        try:
            async with asyncio.timeout(2):
                return bool(await self._pool.fetchval("SELECT 1") == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
