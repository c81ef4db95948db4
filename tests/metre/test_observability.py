"""Every role observable, as an operator runs them: `metre migrate` first on an empty database,
then real poller, processor and API processes over the real broker and PostgreSQL, each
probed on its health port (or the API's own), scraped, and its JSON log lines parsed.

Nothing here sleeps and then asserts: every wait is for a condition (a line, an answer)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.broker import free_port
from testkit.oracle import wait_ingested
from testkit.postgres import create_database, drop_database
from testkit.roles import Roles, role_env
from tests.fixtures.gitrepo import git_commits

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T = TypeVar("T")

JSON_FIELDS = {"time", "level", "logger", "message", "role"}


async def until(
    what: str, probe: Callable[[], Awaitable[T | None]], roles: Roles, timeout: float = 60.0
) -> T:
    """Poll `probe` until it returns something other than None; fail at once if a role died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            found = await probe()
        except httpx.TransportError:
            found = None
        if found is not None:
            return found
        roles.assert_alive()
        assert loop.time() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.1)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= set(ls))


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a role's log parsed as one JSON event (any other line fails the test)."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert set(event) >= JSON_FIELDS, event
        events.append(event)
    return events


@pytest.fixture
async def empty_dsn(pg_dsn: str) -> Any:
    """A database with no schema at all, as a new cluster's PostgreSQL has."""
    dsn = await create_database(pg_dsn)
    yield dsn
    await drop_database(dsn)


async def test_roles_after_migrate_are_probed_scraped_and_log_json(
    tmp_path: Path, empty_dsn: str, kafka_bootstrap: str, awkward_repo: Path
) -> None:
    password = "s3cret-pw-for-the-log"
    env = role_env(
        tmp_path / "data",
        empty_dsn,
        kafka_bootstrap,
        METRE_LOG_FORMAT="json",
        METRE_API_TOKENS=f"tok-{password}",
    )
    roles = Roles(env, tmp_path)
    health = {"poller": free_port(), "processor": free_port()}
    api_port = free_port()
    try:
        # Before `metre migrate`: a role refuses the empty database in one line, exit 2, and
        # only after it reached PostgreSQL (the message names the database, not a connection).
        roles.start("early", "processor", METRE_HEALTH_PORT=str(free_port()))
        refused = roles.procs.pop("early")
        assert await wait_exit(refused) == 2, roles.log("early")
        early = json_lines(roles.log("early"))
        refusal = [e["message"] for e in early if e["level"] == "ERROR"]
        assert len(refusal) == 1, roles.log("early")
        assert "no metre schema yet" in refusal[0]
        assert "metre migrate" in refusal[0]
        assert "the database at" in refusal[0]  # it did reach PostgreSQL
        assert "Traceback" not in roles.log("early")
        assert all(e["role"] == "processor" for e in early)

        out = roles.migrate()
        assert out.startswith("applied "), out
        assert "0001_init.sql" in out
        assert roles.migrate().strip() == "the database schema is up to date"

        roles.start("api", "api", "--port", str(api_port))
        roles.start("poller", "poller", METRE_HEALTH_PORT=str(health["poller"]))
        roles.start("processor", "processor", METRE_HEALTH_PORT=str(health["processor"]))
        auth = {"Authorization": f"Bearer tok-{password}"}
        async with httpx.AsyncClient(timeout=10) as http:

            async def ready(port: int) -> dict[str, Any] | None:
                """The body once ready (degraded first, until the topics are created)."""
                r = await http.get(f"http://127.0.0.1:{port}/readyz")
                body: dict[str, Any] = r.json()
                return body if body["status"] == "ready" else None

            for role, port in health.items():
                body = await until(
                    f"{role} ready",
                    lambda p=port: ready(p),  # type: ignore[misc]  # mypy: a lambda with a default
                    roles,
                )
                assert body["status"] == "ready", body
                checks = {"database": "up", "bus": "up", "data_loss": "up"}
                if role == "processor":
                    checks["consumer"] = "up"  # it owns partitions
                assert body["checks"] == checks
                assert body["role"] == role
                live = await http.get(f"http://127.0.0.1:{port}/healthz")
                assert live.json() == {"status": "ok", "role": role}
            api_ready = await until("api ready", lambda: ready(api_port), roles)
            assert api_ready == {
                "status": "ready",
                "checks": {"database": "up", "bus": "up", "data_loss": "up"},
            }

            api = f"http://127.0.0.1:{api_port}"
            r = await http.post(
                f"{api}/api/v1/repos", json={"url": str(awkward_repo)}, headers=auth
            )
            assert r.status_code == 201, r.text
            repo_id = r.json()["id"]
            async with httpx.AsyncClient(base_url=api, timeout=10) as client:
                await wait_ingested(client, repo_id, len(git_commits(awkward_repo)), timeout=120)
            assert (await http.post(f"{api}/api/v1/repos", json={"url": "x"})).status_code == 401

            async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                r = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/plain")
                return samples(r.text)

            commits = len(git_commits(awkward_repo))
            processor = await scrape(health["processor"])
            assert total(processor, "metre_processor_events_applied_total") == commits
            assert total(processor, "metre_processor_events_consumed_total") >= commits
            assert total(processor, "metre_processor_batch_duration_seconds_count") >= 1
            assert total(processor, "metre_processor_dead_letters_total") == 0
            assert total(processor, "metre_repositories", state="idle") == 1

            async def lag_drained() -> bool | None:
                found = await scrape(health["processor"])
                lags = {ls: v for (n, ls), v in found.items() if n == "metre_consumer_lag"}
                return True if lags and sum(lags.values()) == 0 else None

            await until("consumer lag reported and drained", lag_drained, roles)

            poller = await scrape(health["poller"])
            assert total(poller, "metre_polls_total", outcome="changed") >= 1
            assert total(poller, "metre_poll_duration_seconds_count", outcome="changed") >= 1
            assert total(poller, "metre_poller_events_published_total") == commits

            served = await scrape(api_port)
            route = "/api/v1/repos/{repo_id}"
            assert total(served, "metre_http_requests_total", route=route, status="200") >= 1
            assert total(served, "metre_http_request_duration_seconds_count", route=route) >= 1
            assert total(served, "metre_http_requests_total", route="/api/v1/repos",
                         method="POST", status="401") == 1  # fmt: skip
            assert total(served, "metre_http_requests_total", route="/api/v1/repos",
                         method="POST", status="201") == 1  # fmt: skip
            by_path = ("route", f"/api/v1/repos/{repo_id}")
            assert not [ls for (n, ls), _ in served.items() if by_path in ls]
        roles.assert_alive()
    finally:
        codes = roles.stop_all()
    assert codes == {"api": 0, "poller": 0, "processor": 0}, codes
    for name in ("api", "poller", "processor"):
        text = roles.log(name)
        events = json_lines(text)
        assert events, name
        assert {e["role"] for e in events} == {name}
        assert password not in text, name
    assert any(e["logger"] == "uvicorn.error" for e in json_lines(roles.log("api")))
    assert any("published" in e["message"] for e in json_lines(roles.log("poller")))


async def test_readiness_names_the_bus_when_it_is_away(tmp_path: Path, db_dsn: str) -> None:
    """No broker at the bootstrap address: the processor waits for it and says so (503, bus
    down); the API still serves reads and says it is degraded (200, bus down, named)."""
    gone = f"127.0.0.1:{free_port()}"
    roles = Roles(role_env(tmp_path / "data", db_dsn, gone), tmp_path)
    port, api_port = free_port(), free_port()
    try:
        roles.start("processor", "processor", METRE_HEALTH_PORT=str(port))
        roles.start("api", "api", "--port", str(api_port))
        async with httpx.AsyncClient(timeout=10) as http:

            async def answer(url: str, status: int) -> dict[str, Any] | None:
                """The body once the database is up (connecting first) and the status is it."""
                r = await http.get(url)
                body: dict[str, Any] = r.json()
                up = body["checks"]["database"] == "up"
                return body if r.status_code == status and up else None

            processor = await until(
                "processor unready",
                lambda: answer(f"http://127.0.0.1:{port}/readyz", 503),
                roles,
            )
            assert processor["status"] == "unavailable"
            # The consumer is named from the start: never `ready` before it exists.
            assert processor["checks"] == {
                "database": "up",
                "bus": "down",
                "data_loss": "up",
                "consumer": "degraded",
            }
            assert processor["details"]["consumer"] == "not started"
            assert processor["error"]["message"] == "bus unreachable"
            assert gone in processor["details"]["bus"]
            live = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert live.status_code == 200  # waiting, alive: not to be restarted

            api = await until(
                "api degraded", lambda: answer(f"http://127.0.0.1:{api_port}/readyz", 200), roles
            )
            assert api["status"] == "degraded"
            assert api["checks"] == {"database": "up", "bus": "down", "data_loss": "up"}
            assert api["degraded"] == ["bus"]
            repos = await http.get(f"http://127.0.0.1:{api_port}/api/v1/repos")
            assert repos.status_code == 200
            for _ in range(20):  # asked again and again: the log says it once
                assert (await http.get(f"http://127.0.0.1:{api_port}/readyz")).status_code == 200
    finally:
        codes = roles.stop_all()
    assert codes == {"processor": 0, "api": 0}, codes
    api_log = roles.log("api")
    assert api_log.count("readiness: bus down") == 1, api_log
    assert "Unable connect" not in api_log, api_log


async def test_a_processor_without_partitions_is_degraded_and_says_why(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str
) -> None:
    """Two processors over a one-partition topic: one owns it (ready), the other nothing
    (200 degraded, `consumer` named): scaling past the partitions shows."""
    env = role_env(tmp_path / "data", db_dsn, kafka_bootstrap, METRE_PARTITIONS="1")
    roles = Roles(env, tmp_path)
    ports = {"processor-1": free_port(), "processor-2": free_port()}
    try:
        for name, port in ports.items():
            roles.start(name, "processor", METRE_HEALTH_PORT=str(port))
        async with httpx.AsyncClient(timeout=10) as http:

            async def split() -> dict[str, dict[str, Any]] | None:
                bodies = {}
                for name, port in ports.items():
                    r = await http.get(f"http://127.0.0.1:{port}/readyz")
                    bodies[name] = r.json() | {"http": r.status_code}
                states = sorted(b["status"] for b in bodies.values())
                return bodies if states == ["degraded", "ready"] else None

            bodies = await until("one ready, one degraded", split, roles, timeout=90)
        idle = next(b for b in bodies.values() if b["status"] == "degraded")
        assert idle["http"] == 200
        assert idle["checks"] == {
            "database": "up",
            "bus": "up",
            "consumer": "degraded",
            "data_loss": "up",
        }
        assert idle["degraded"] == ["consumer"]
        assert "owns no partition" in idle["details"]["consumer"]
    finally:
        codes = roles.stop_all()
    assert set(codes.values()) == {0}, codes


def _metre(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metre", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("metre: ")
    return lines[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM "
         "schema_migrations)", "older than this metre needs"),
        ("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')",
         "newer than this metre knows"),
        ("UPDATE schema_migrations SET name = '0002_other_build.sql' WHERE version = 2",
         "0002_other_build.sql"),
    ],
)  # fmt: skip
async def test_roles_refuse_a_schema_that_is_not_theirs(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str, change: str, expected: str
) -> None:
    con = await asyncpg.connect(db_dsn)
    try:
        await con.execute(change)
    finally:
        await con.close()
    env = role_env(tmp_path / "data", db_dsn, kafka_bootstrap)
    for role in ("poller", "processor", "api"):
        line = await asyncio.to_thread(_one_line, await asyncio.to_thread(_metre, env, role))
        assert expected in line, line
        assert "schema" in line


def test_health_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = role_env(
            tmp_path, "postgresql://u:pw@127.0.0.1:1/db", "127.0.0.1:1",
            METRE_HEALTH_PORT=str(port), METRE_HEALTH_HOST="127.0.0.1",
        )  # fmt: skip
        line = _one_line(_metre(env, "processor"))
    assert f"127.0.0.1:{port}" in line
    assert "METRE_HEALTH_PORT" in line


def test_api_on_all_interfaces_without_tokens_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(METRE_DATA_DIR=str(tmp_path), METRE_DATABASE_URL="postgresql://u@127.0.0.1:1/d")
    line = _one_line(_metre(env, "api", "--host", "0.0.0.0"))
    assert "refusing to serve an open API on 0.0.0.0" in line
    assert "METRE_API_TOKENS" in line


def test_migrate_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(METRE_DATA_DIR=str(tmp_path))
    assert "METRE_DATABASE_URL" in _one_line(_metre(env, "migrate"))
    port = free_port()
    env.update(METRE_DATABASE_URL=f"postgresql://metre:pw-xyz@127.0.0.1:{port}/metre")
    line = _one_line(_metre(env, "migrate"))
    assert f"cannot reach PostgreSQL at metre@127.0.0.1:{port}/metre" in line
    assert "pw-xyz" not in line


async def test_metre_up_serves_every_roles_metrics_on_the_api(
    tmp_path: Path, db_dsn: str, awkward_repo: Path
) -> None:
    """One process: the API's /metrics holds the poller's, the processor's and its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(
        METRE_DATA_DIR=str(tmp_path / "data"),
        METRE_DATABASE_URL=db_dsn,
        METRE_RATE_LIMIT="0",
        METRE_LOG_FORMAT="json",
    )
    with (tmp_path / "up.log").open("wb") as err:
        up = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "metre", "up", "--port", "0", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    try:
        assert up.stdout is not None
        line = (await asyncio.wait_for(up.stdout.readline(), 90)).decode()
        assert line.startswith("metre is up: "), line
        url = line.split()[3]
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            r = await api.post("/api/v1/repos", json={"url": str(awkward_repo)})
            assert r.status_code == 201, r.text
            commits = len(git_commits(awkward_repo))
            await wait_ingested(api, r.json()["id"], commits, timeout=120)
            ready = (await api.get("/readyz")).json()
            assert ready == {
                "status": "ready",
                "checks": {"database": "up", "bus": "up", "data_loss": "up"},
            }
            found = samples((await api.get("/metrics")).text)
        assert total(found, "metre_processor_events_applied_total") == commits
        assert total(found, "metre_poller_events_published_total") == commits
        assert total(found, "metre_polls_total", outcome="changed") >= 1
        assert total(found, "metre_http_requests_total", route="/api/v1/repos/{repo_id}") >= 1
        assert total(found, "metre_repositories", state="idle") == 1
        assert total(found, "metre_ready_check", check="bus") == 1
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(up.wait(), 60) == 0
    events = json_lines((tmp_path / "up.log").read_text())
    assert {e["role"] for e in events} == {"up"}
