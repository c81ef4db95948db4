"""The embedded PostgreSQL: starts, keeps its data across restarts, is shared by processes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from metre.pg import database_of, is_running, start_embedded, stop_embedded, with_database

pytestmark = pytest.mark.integration


@pytest.fixture
def pgdata() -> Iterator[Path]:
    # Not under pytest's basetemp: concurrent sessions prune each other's old directories.
    root = Path(tempfile.mkdtemp(prefix="metre-test-pg-"))
    yield root / "data"
    stop_embedded(root / "data")
    shutil.rmtree(root, ignore_errors=True)


async def test_data_survives_stop_and_start(pgdata: Path) -> None:
    dsn = await asyncio.to_thread(start_embedded, pgdata)
    assert database_of(dsn) == "metre"
    assert is_running(pgdata)
    con = await asyncpg.connect(dsn)
    await con.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    await con.close()

    await asyncio.to_thread(stop_embedded, pgdata)
    assert not is_running(pgdata)
    with pytest.raises(OSError):  # noqa: PT011 (no socket: connection refused or missing)
        await asyncpg.connect(dsn)

    again = await asyncio.to_thread(start_embedded, pgdata)
    assert again == dsn
    con = await asyncpg.connect(again)
    try:
        assert await con.fetchval("SELECT x FROM kept") == 42
    finally:
        await con.close()


async def test_a_second_process_reuses_the_running_server(pgdata: Path) -> None:
    dsn = await asyncio.to_thread(start_embedded, pgdata)
    con = await asyncpg.connect(dsn)
    try:
        started = await con.fetchval("SELECT pg_postmaster_start_time()")
        code = (
            "import sys; from pathlib import Path; from metre.pg import start_embedded;"
            f"print(start_embedded(Path({str(pgdata)!r}), database='other'))"
        )
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
            check=True, timeout=60,
        )  # fmt: skip
        assert out.stdout.strip() == with_database(dsn, "other")
        # The other process has exited; the server it shared is still ours, unrestarted.
        assert await con.fetchval("SELECT pg_postmaster_start_time()") == started
        assert await con.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'other'") == 1
    finally:
        await con.close()


def test_rejects_odd_database_names(pgdata: Path) -> None:
    with pytest.raises(ValueError, match="database name"):
        start_embedded(pgdata, database="x'; DROP")
