"""Startup failures of the real CLI, run as a subprocess: one line on stderr saying why, exit
status 2, no traceback unless METRE_LOG_LEVEL=DEBUG; and one `metre up` per data directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
import pytest

from metre.pg import start_embedded, stop_embedded
from testkit.broker import free_port

pytestmark = pytest.mark.integration


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(METRE_DATA_DIR=str(data_dir), METRE_RATE_LIMIT="0", **extra)
    return env


def metre(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metre", *args],
        env=_env(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused start (and the exit status it must have)."""
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("metre: "), lines
    assert "Traceback" not in out.stderr
    return lines[0]


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        line = one_line(metre(tmp_path / "d", "up", "--port", str(port)))
        assert f"127.0.0.1:{port}" in line
        assert "already in use" in line
        assert "--port" in line
        debug = metre(tmp_path / "d", "up", "--port", str(port), METRE_LOG_LEVEL="DEBUG")
        assert debug.returncode == 2
        assert "Traceback" in debug.stderr
    assert not (tmp_path / "d" / "api.json").exists()


def test_database_unreachable_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://metre:sekrit-pw@127.0.0.1:{port}/metre"
    line = one_line(metre(tmp_path, "up", "--port", "0", METRE_DATABASE_URL=url))
    assert f"cannot reach PostgreSQL at metre@127.0.0.1:{port}/metre" in line
    assert "refused" in line
    assert "sekrit-pw" not in line


@pytest.fixture
def password_server() -> Iterator[tuple[str, str]]:
    """An embedded PostgreSQL of its own whose role `pwuser` must give the password `right`:
    (socket directory, database)."""
    root = Path(tempfile.mkdtemp(prefix="metre-test-pw-"))
    pgdata = root / "data"
    dsn = start_embedded(pgdata)
    try:

        async def prepare() -> None:
            con = await asyncpg.connect(dsn)
            try:
                await con.execute("CREATE ROLE pwuser LOGIN PASSWORD 'right'")
                hba = pgdata / "pg_hba.conf"
                hba.write_text("local all pwuser scram-sha-256\n" + hba.read_text())
                await con.execute("SELECT pg_reload_conf()")
            finally:
                await con.close()

        asyncio.run(prepare())
        yield parse_qs(urlsplit(dsn).query)["host"][0], "metre"
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(root, ignore_errors=True)


def test_database_refusing_the_password_is_one_line(
    tmp_path: Path, password_server: tuple[str, str]
) -> None:
    sockets, db = password_server
    url = f"postgresql://pwuser:wrong-pw-123@/{db}?host={sockets}"
    line = one_line(metre(tmp_path, "up", "--port", "0", METRE_DATABASE_URL=url))
    assert "refused the connection" in line
    assert "password" in line
    assert "wrong-pw-123" not in line


def test_broker_unreachable_is_one_line_within_bounded_time(tmp_path: Path, db_dsn: str) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = metre(
        tmp_path, "up", "--port", "0", METRE_DATABASE_URL=db_dsn, METRE_KAFKA_BOOTSTRAP=bootstrap
    )
    elapsed = time.monotonic() - started
    line = one_line(out)
    assert f"cannot reach the Kafka broker at {bootstrap}" in line
    assert "METRE_KAFKA_BOOTSTRAP" in line
    assert elapsed < 60, elapsed  # not the 30 s request timeout times retries


async def test_schema_newer_than_the_code_is_one_line(tmp_path: Path, db_dsn: str) -> None:
    con = await asyncpg.connect(db_dsn)
    try:
        await con.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')"
        )
        tables_before = await con.fetchval("SELECT count(*) FROM pg_tables")
    finally:
        await con.close()
    out = await asyncio.to_thread(metre, tmp_path, "up", "--port", "0", METRE_DATABASE_URL=db_dsn)
    line = one_line(out)
    assert "schema version 9999" in line
    assert "newer" in line
    con = await asyncpg.connect(db_dsn)
    try:
        assert await con.fetchval("SELECT count(*) FROM pg_tables") == tables_before
    finally:
        await con.close()


async def test_a_second_metre_up_on_the_same_data_dir_says_who_holds_it(
    tmp_path: Path, db_dsn: str
) -> None:
    data = tmp_path / "data"
    env = _env(data, METRE_DATABASE_URL=db_dsn, METRE_LOG_LEVEL="WARNING")
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        line = (await asyncio.wait_for(first.stdout.readline(), 90)).decode()
        assert line.startswith("metre is up: "), line
        url = orjson.loads((data / "api.json").read_bytes())["url"]

        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "metre", "up", "--port", "0"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        refusal = one_line(second)
        assert f"pid {first.pid}" in refusal
        assert url in refusal
        assert str(data) in refusal

        # The first is untouched: still serving, still found by the CLI.
        assert orjson.loads((data / "api.json").read_bytes())["url"] == url
        async with httpx.AsyncClient(base_url=url) as api:
            assert (await api.get("/healthz")).status_code == 200
        status = await asyncio.to_thread(metre, data, "status")
        assert status.returncode == 0, status.stderr
    finally:
        if first.returncode is None:
            first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 60) == 0

    # Once the first is gone, the lock is free again (also after a SIGKILL: the kernel drops it).
    again = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert again.stdout is not None
        line = (await asyncio.wait_for(again.stdout.readline(), 90)).decode()
        assert line.startswith("metre is up: "), line
    finally:
        again.kill()
        await again.wait()
    third = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert third.stdout is not None
        line = (await asyncio.wait_for(third.stdout.readline(), 90)).decode()
        assert line.startswith("metre is up: "), line
    finally:
        third.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(third.wait(), 60) == 0
