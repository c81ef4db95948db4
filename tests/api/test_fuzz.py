"""API fuzzing: schemathesis over the app's own OpenAPI schema, against the real PostgreSQL.

The app runs in uvicorn on 127.0.0.1 (its own event loop in a thread, its own asyncpg pool on
a fresh migrated database from the `store` fixture's server). Every operation gets a bounded
number of generated requests, valid and invalid; the checks: no 5xx, responses conform to the
schema (status codes, content types, bodies), and every 4xx is JSON with a non-empty
``error.message``. Name resolution is replaced (no DNS traffic; nothing is fetched: no poller).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis import Case

import metre.ingest.mirror
import metre.ingest.repourls
from metre.api.app import create_app
from metre.api.server import server_config
from metre.settings import Settings

MAX_EXAMPLES = 25


def _resolve(host: str, port: int) -> Sequence[str]:
    if host.endswith((".invalid", ".test")) or "." not in host:
        raise OSError(f"{host} does not resolve")
    return ["93.184.215.14"]  # a public address; nothing connects to it (no poller runs)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[str]:
    from testkit.postgres import drop_database

    # The module-scoped app needs its own database; seed one repository so that path
    # parameters sometimes hit an existing row.
    dsn = asyncio.run(_fresh_database(pg_dsn))
    settings_ = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz"),
        database_url=SecretStr(dsn),
        allow_local_paths=False,
        rate_limit=0,
    )
    original = metre.ingest.repourls.system_resolve
    metre.ingest.repourls.system_resolve = _resolve  # type: ignore[assignment]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(create_app(settings_), log_level="warning", lifespan="on")
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        metre.ingest.repourls.system_resolve = original
        asyncio.run(drop_database(dsn))


async def _fresh_database(server_dsn: str) -> str:
    from metre.processors.store import PgStore
    from testkit.postgres import create_database

    dsn = await create_database(server_dsn)
    store = await PgStore.connect(dsn, min_size=1, max_size=1)
    try:
        await store.migrate()
        await store.add_repo("https://example.org/seed.git", None)
    finally:
        await store.close()
    return dsn


# The schema is the app's own, generated without connecting anything; requests go to `api_url`.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("/nonexistent-metre-fuzz"))).openapi()
)


def _error_shape(case: Case[Any], response: Any) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict), body
        message = body.get("error", {}).get("message")
        assert isinstance(message, str), body
        assert message.strip(), body
        assert body["error"]["status"] == response.status_code, body


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_fuzz(case: Case[Any], api_url: str) -> None:
    # Half the valid repository ids become the seeded repository's, so that the operations
    # behind the 404 (metric queries and their parameters) are reached too.
    rid = (case.path_parameters or {}).get("repo_id")
    if isinstance(rid, int) and not isinstance(rid, bool) and rid > 1 and rid % 2 == 0:
        case.path_parameters["repo_id"] = 1
    response = case.call(base_url=api_url, timeout=30)
    # Excluded: positive_data_acceptance (a 422 for a schema-valid but meaningless value is
    # right: "0" is a string, not a repository URL; an empty `repos=` names no repository) and
    # negative_data_rejection (query dates are parsed leniently: `to=0` is read as 1970-01-01).
    # Everything else runs: no 5xx, status codes, content types, headers, body schemas.
    case.validate_response(
        response,
        excluded_checks=[
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )
    _error_shape(case, response)


def test_fuzz_covers_the_api() -> None:
    """The fuzzed schema really lists the endpoints (a broken schema would fuzz nothing)."""
    paths = set(schema.raw_schema["paths"])
    assert {"/api/v1/repos", "/api/v1/repos/{repo_id}"} <= paths
