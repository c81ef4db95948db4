"""Graceful shutdown and dependency outages of the distributed roles, over the real broker and
PostgreSQL: SIGTERM makes a poller give its repository back (lease released, not left
'polling') and a processor finish its batch and leave the group (exit code 0, another member
takes over within a few session timeouts, nothing lost); roles started while PostgreSQL or the
broker is down wait for them and then proceed; /readyz says which dependency is down."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from metre.api.app import create_app
from metre.pg import start_embedded, stop_embedded
from metre.processors.store import PgStore
from metre.settings import Settings
from testkit.broker import Broker, free_port
from testkit.oracle import assert_api_matches_git, wait_ingested
from testkit.postgres import PgServer
from testkit.roles import SESSION_TIMEOUT_MS, Roles, role_env, wait_ready
from tests.fixtures.gitrepo import git_commits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HANDOVER_WITHIN = 5 * SESSION_TIMEOUT_MS / 1000
"""Seconds from SIGTERM until the other processor holds every partition (a heartbeat interval
and a join when the member leaves; the bound leaves room for a loaded machine)."""


_ASSIGNED = re.compile(r"^(\S+ \S+) INFO .*Setting newly assigned partitions \{(.*)\}", re.M)


def full_assignment_after(log: Path, after: float) -> float | None:
    """When the log's consumer was first assigned all 4 partitions after `after` (epoch s)."""
    for stamp, parts in _ASSIGNED.findall(log.read_text(errors="replace")):
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
        if when >= after and parts.count("partition=") == 4:
            return when
    return None


async def test_sigterm_poller_releases_and_processor_hands_over(
    tmp_path: Path,
    db_dsn: str,
    running_kafka_broker: Broker,
    history_factory: Callable[..., Path],
) -> None:
    big = history_factory(commits=3000, seed=5)
    roles = Roles(role_env(tmp_path / "data", db_dsn, running_kafka_broker.bootstrap), tmp_path)
    roles.migrate()
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller-1", "poller")
    roles.start("processor-1", "processor")
    roles.start("processor-2", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles)
            repo_id = (await api.post("/api/v1/repos", json={"url": str(big)})).json()["id"]

            # The poller is stopped in the middle of its poll.
            for _ in range(1000):
                info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
                if info["state"] == "polling":
                    break
                await asyncio.sleep(0.01)
            assert info["state"] == "polling"
            assert await asyncio.to_thread(roles.terminate, "poller-1") == 0
            con = await asyncpg.connect(db_dsn)
            try:
                row = await con.fetchrow(
                    "SELECT state, lease_until, head FROM repos WHERE id = $1", repo_id
                )
            finally:
                await con.close()
            assert row is not None
            assert row["state"] != "polling"
            assert row["lease_until"] is None
            if row["head"] is None:  # abandoned (not finished): due again at once
                assert row["state"] == "pending"
            roles.start("poller-2", "poller")

            # A processor is stopped mid-stream: it exits cleanly, the other takes over.
            for _ in range(1200):
                info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
                if info["commits"] >= 300:
                    break
                await asyncio.sleep(0.05)
            assert 300 <= info["commits"] < 3000, "the SIGTERM must land mid-stream"
            stopped_at = time.time()
            assert await asyncio.to_thread(roles.terminate, "processor-1") == 0
            exited_in = time.time() - stopped_at
            taken = None
            for _ in range(int(HANDOVER_WITHIN * 2 * 10)):  # look twice as long as allowed
                taken = full_assignment_after(tmp_path / "processor-2.log", stopped_at)
                if taken is not None:
                    break
                await asyncio.sleep(0.1)
            takeover = "none seen" if taken is None else f"{taken - stopped_at:.1f} s"
            print(f"processor exit {exited_in:.1f} s, takeover {takeover} after SIGTERM")
            # The group was stable (formed in generation 0 on the test broker): the stopped
            # member leaves it (KafkaBus sends LeaveGroup from generation 0), so the other takes
            # every partition after a heartbeat interval and a join (about 3 s), not after the
            # session timeout; the bound leaves room for a loaded machine.
            assert "left group" in (tmp_path / "processor-1.log").read_text(errors="replace")
            assert taken is not None, f"no hand-over in {2 * HANDOVER_WITHIN:.0f} s"
            assert taken - stopped_at < HANDOVER_WITHIN
            await wait_ingested(api, repo_id, 3000, timeout=300)
            await assert_api_matches_git(api, repo_id, big)
    finally:
        codes = roles.stop_all()
    assert all(code == 0 for code in codes.values()), codes


async def _wait_line(roles: Roles, name: str, text: str, timeout: float = 60.0) -> None:
    """Until `text` is in the role's log (never a fixed sleep: start-up is slow under load)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in roles.log(name):
        assert roles.crashed() == []
        assert loop.time() < deadline, f"{name}: no {text!r} in {timeout:.0f} s"
        await asyncio.sleep(0.1)


async def _readyz(
    port: int, wanted: Callable[[dict[str, Any]], bool], roles: Roles, timeout: float = 60.0
) -> dict[str, Any]:
    """The health port's /readyz body once `wanted` holds of it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                body: dict[str, Any] = (await http.get(f"http://127.0.0.1:{port}/readyz")).json()
                if wanted(body):
                    return body
            assert roles.crashed() == []
            assert loop.time() < deadline, f"/readyz on {port}: not as wanted in {timeout:.0f} s"
            await asyncio.sleep(0.1)


async def test_roles_wait_for_postgres_and_broker(tmp_path: Path, awkward_repo: Path) -> None:
    pgdata = tmp_path / "pg" / "data"
    dsn = await asyncio.to_thread(start_embedded, pgdata)
    broker = Broker(free_port(), tmp_path / "broker.log")  # not started yet
    store = await PgStore.connect(dsn)
    roles = Roles(role_env(tmp_path / "data", dsn, broker.bootstrap), tmp_path)
    server: PgServer | None = None
    try:
        await store.migrate()
        repo = await store.add_repo(str(awkward_repo), None)
        server = await PgServer.of(dsn)
        await asyncio.to_thread(server.stop)
        app = create_app(Settings(data_dir=tmp_path / "data"), store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            r = await api.get("/readyz")
            assert r.status_code == 503
            assert r.json()["status"] == "unavailable"
            assert r.json()["checks"] == {"database": "down"}
            assert r.json()["error"]["message"] == "database unreachable"

            health = free_port()
            roles.start("processor", "processor", METRE_HEALTH_PORT=str(health))
            roles.start("poller", "poller")
            for name in ("processor", "poller"):
                await _wait_line(roles, name, "PostgreSQL unavailable, retrying")
            ready = await _readyz(health, lambda b: b["checks"]["database"] == "down", roles)
            assert ready == {
                "status": "unavailable",
                "checks": {
                    "database": "down",
                    "bus": "down",
                    "data_loss": "up",
                    "consumer": "degraded",
                },
                "details": {
                    "database": "connecting",
                    "bus": ready["details"]["bus"],
                    "consumer": "not started",
                },
                "error": {"status": 503, "message": "bus and database unreachable"},
                "role": "processor",
            }

            await asyncio.to_thread(server.start)
            for _ in range(100):
                r = await api.get("/readyz")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert r.json() == {"status": "ready", "checks": {"database": "up"}}
            await _wait_line(roles, "processor", "the bus unavailable, retrying")  # now the broker
            ready = await _readyz(health, lambda b: b["checks"]["database"] == "up", roles)
            assert ready["status"] == "unavailable"
            assert ready["checks"] == {
                "database": "up",
                "bus": "down",
                "data_loss": "up",
                "consumer": "degraded",
            }
            assert roles.crashed() == []
            assert await store.commit_count(repo.id) == 0

            broker.start()
            expected = set(git_commits(awkward_repo))
            for _ in range(600):
                if await store.commit_shas(repo.id) == expected:
                    break
                await asyncio.sleep(0.1)
            assert await store.commit_shas(repo.id) == expected
            assert roles.crashed() == []
    finally:
        codes = roles.stop_all()
        await store.close()
        broker.stop()
        if server is not None:
            # Started again by pg_ctl, the server is no longer the one stop_embedded knows.
            with contextlib.suppress(subprocess.CalledProcessError):
                await asyncio.to_thread(server.stop)
        await asyncio.to_thread(stop_embedded, pgdata)
    assert codes == {"processor": 0, "poller": 0}
