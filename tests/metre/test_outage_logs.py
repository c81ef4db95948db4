"""Bounded logs while the broker is away, counted on real role processes over the real
broker and PostgreSQL: one line when it goes, a summary every METRE_OUTAGE_SUMMARY_INTERVAL
while it stays away, one line when it is back (the roles logged ~40 and ~80 lines a second)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from testkit.broker import Broker, free_port
from testkit.oracle import wait_ingested
from testkit.roles import Roles, role_env, wait_ready
from tests.fixtures.gitrepo import git_commits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUMMARY = 2.0


async def _until(what: str, check: Callable[[], bool], roles: Roles) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120  # a bound only so that a broken build ends
    while not check():
        roles.assert_alive()
        assert loop.time() < deadline, what
        await asyncio.sleep(0.2)


async def test_a_broker_outage_logs_a_bounded_number_of_lines(
    tmp_path: Path,
    db_dsn: str,
    running_kafka_broker: Broker,
    history_factory: Callable[..., Path],
) -> None:
    repo = history_factory(60, 3)
    env = role_env(
        tmp_path / "data",
        db_dsn,
        running_kafka_broker.bootstrap,
        METRE_OUTAGE_SUMMARY_INTERVAL=str(SUMMARY),
        METRE_POLL_INTERVAL="0.5",
        METRE_BUS_CHECK_INTERVAL="0.5",
    )
    roles = Roles(env, tmp_path)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    names = ("poller", "processor")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles)
            r = await api.post("/api/v1/repos", json={"url": str(repo)})
            repo_id = r.json()["id"]
            await wait_ingested(api, repo_id, len(git_commits(repo)), timeout=180)
            before = {n: len(roles.log(n).splitlines()) for n in names}

            running_kafka_broker.kill()
            began = time.monotonic()
            # Wait for the lines, never for a time: three summaries of the watch in each role.
            for n in names:
                await _until(
                    f"{n} summarises",
                    lambda n=n: roles.log(n).count("still unavailable") >= 3,  # type: ignore[misc]
                    roles,
                )
            away = time.monotonic() - began
            during = {n: roles.log(n).splitlines()[before[n] :] for n in names}
            running_kafka_broker.start()
            for n in names:
                await _until(
                    f"{n} says it is back",
                    lambda n=n: " is back " in roles.log(n),  # type: ignore[misc]  # mypy: a lambda with a default
                    roles,
                )
            for n, lines in during.items():
                records = [x for x in lines if x[:4].isdigit()]  # not traceback lines
                # Per source of lines (aiokafka's templates, each retry loop, the watch): one
                # when it went, then at most one per summary interval.
                bound = 25 + 8 * away / SUMMARY
                assert len(records) <= bound, (n, away, len(records), "\n".join(records[-40:]))
                assert len(lines) <= 2 * bound, (n, "tracebacks", len(lines))
    finally:
        running_kafka_broker.start()
        codes = roles.stop_all()
    assert all(code == 0 for code in codes.values()), codes
