"""The embedded PostgreSQL under a real `metre up` process: restarted when it dies (503 with
Retry-After meanwhile, then correct data), and always stopped on exit, also after an earlier
SIGKILL of `metre up`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from metre.pg import postmaster_pid
from testkit.oracle import assert_api_matches_git, wait_ingested
from tests.fixtures.gitrepo import GitRepoBuilder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(
        METRE_DATA_DIR=str(data_dir),
        METRE_POLL_INTERVAL="1",
        METRE_LOG_LEVEL="WARNING",
        METRE_RATE_LIMIT="0",
    )
    return env


async def start_up(data: Path) -> tuple[asyncio.subprocess.Process, str]:
    (data / "api.json").unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=_env(data),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
    assert line.startswith("metre is up: "), line
    return proc, str(orjson.loads((data / "api.json").read_bytes())["url"])


def postgres_of(pgdata: Path) -> list[psutil.Process]:
    """Every live postgres process whose command line names `pgdata`."""
    found = []
    for p in psutil.process_iter(attrs=["name", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if p.info["name"] == "postgres" and any(str(pgdata) in part for part in cmd):
            found.append(p)
    return found


async def test_a_killed_embedded_postgres_is_restarted_and_503_meanwhile(tmp_path: Path) -> None:
    data = tmp_path / "data"
    live = GitRepoBuilder(tmp_path / "live")
    live.write("a.txt", b"one\n")
    live.commit("first")
    proc, url = await start_up(data)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            repo_id = (await api.post("/api/v1/repos", json={"url": str(live.path)})).json()["id"]
            await wait_ingested(api, repo_id, 1)
            old = postmaster_pid(data / "pgdata")
            assert old is not None
            os.kill(old, signal.SIGKILL)

            unavailable: list[httpx.Response] = []
            not_ready = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:
                assert loop.time() < deadline, "the embedded PostgreSQL did not come back"
                r = await api.get(f"/api/v1/repos/{repo_id}")
                if r.status_code == 200 and unavailable:
                    break
                if r.status_code != 200:
                    unavailable.append(r)
                    ready = await api.get("/readyz")
                    not_ready |= ready.status_code == 503
                await asyncio.sleep(0.02)
            assert unavailable, "no request saw the database away"
            assert {r.status_code for r in unavailable} == {503}, [r.text for r in unavailable]
            assert all(int(r.headers["Retry-After"]) > 0 for r in unavailable)
            assert unavailable[0].json()["error"]["status"] == 503
            assert not_ready, "/readyz never said the database was away"
            new = postmaster_pid(data / "pgdata")
            assert new is not None
            assert new != old
            assert psutil.pid_exists(new)

            # Back to normal: the data is intact and new commits still arrive.
            live.write("a.txt", b"one\ntwo\n")
            live.commit("second")
            await wait_ingested(api, repo_id, 2, timeout=60)
            await assert_api_matches_git(api, repo_id, live.path)
            assert (await api.get("/readyz")).status_code == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert postgres_of(data / "pgdata") == []


async def test_stopped_on_exit_also_after_an_earlier_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pgdata = (data / "pgdata").resolve()
    proc, _ = await start_up(data)
    proc.kill()
    await proc.wait()
    orphan = postmaster_pid(pgdata)
    assert orphan is not None
    assert psutil.pid_exists(orphan)  # a SIGKILL leaves the server running...

    proc, url = await start_up(data)  # ...the next metre up adopts it...
    async with httpx.AsyncClient(base_url=url) as api:
        assert (await api.get("/readyz")).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    # ...and a clean stop stops it: no pid file, no process of that data directory.
    assert postmaster_pid(pgdata) is None
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie"
    assert postgres_of(pgdata) == []
