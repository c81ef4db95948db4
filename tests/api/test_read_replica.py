"""METRE_READ_DATABASE_URL: the API sends metric reads there and everything else to the primary.

A real replica is not started: the "replica" is a second database on the session's PostgreSQL
holding a different history under the same repository id, so every answer shows which
database it came from (numbers from the git CLI, testkit/oracle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from metre.api.app import create_app
from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from metre.settings import Settings
from testkit.broker import free_port
from testkit.oracle import expected_activity
from testkit.pipeline import Pipeline, wait_applied
from testkit.postgres import drop_database
from tests.fixtures.postgres import MakeDatabase

pytestmark = pytest.mark.integration


async def _ingest(dsn: str, repo: Path, mirrors: Path) -> int:
    """Register and ingest `repo` into the database of `dsn` through the real pipeline."""
    store = await PgStore.connect(dsn, min_size=1, max_size=4)
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics(["r.commits", "r.dlq"])
    poller = Poller(bus, store, PollerConfig(mirrors_dir=mirrors, topic="r.commits"))
    processor = Processor(bus, store, "r.commits", "r-proc", 500, "r.dlq", fetch_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    try:
        row = await store.add_repo(str(repo), None)
        claimed = await store.claim_due_repo(60)
        assert claimed is not None
        await poller.poll(claimed)
        await wait_applied(processor, lambda: poller.published)
        return row.id
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await bus.stop()
        await store.close()


@pytest.fixture
async def replica_dsn(make_database: MakeDatabase) -> AsyncIterator[str]:
    dsn = await make_database()
    yield dsn
    await drop_database(dsn)


@contextlib.asynccontextmanager
async def _client(settings: Settings, store: PgStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metre") as client:
            yield client


def _commits(repo: Path) -> int:
    return sum(d["commits"] for d in expected_activity(repo).values())


async def _activity_commits(client: httpx.AsyncClient, repo_id: int) -> int:
    r = await client.get(f"/api/v1/repos/{repo_id}/metrics/activity?granularity=month")
    assert r.status_code == 200, r.text
    return sum(p["commits"] for p in r.json()["series"])


async def test_metric_reads_go_to_the_read_database_and_the_registry_to_the_primary(
    metre_api: Pipeline,
    replica_dsn: str,
    random_repo: Path,
    awkward_repo: Path,
    tmp_path: Path,
) -> None:
    primary_id = await metre_api.ingest(random_repo)
    replica_id = await _ingest(replica_dsn, awkward_repo, tmp_path / "replica-mirrors")
    assert primary_id == replica_id  # the same id names a different history in each
    in_primary, in_replica = _commits(random_repo), _commits(awkward_repo)
    assert in_primary != in_replica

    settings = Settings(read_database_url=SecretStr(replica_dsn))
    async with _client(settings, metre_api.store) as client:
        assert await _activity_commits(client, primary_id) == in_replica
        authors = await client.get(f"/api/v1/repos/{primary_id}/metrics/authors")
        assert sum(a["commits"] for a in authors.json()["authors"]) == in_replica
        registry = await client.get(f"/api/v1/repos/{primary_id}")
        assert registry.json()["commits"] == in_primary
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "up", "read_database": "up"}

    # Unset, every read goes to METRE_DATABASE_URL's database.
    async with _client(Settings(), metre_api.store) as client:
        assert await _activity_commits(client, primary_id) == in_primary
        ready = await client.get("/readyz")
        assert ready.json()["checks"] == {"database": "up"}


async def test_an_unreachable_read_database_fails_readiness_and_metric_reads_only(
    metre_api: Pipeline, random_repo: Path
) -> None:
    repo_id = await metre_api.ingest(random_repo)
    nobody = f"postgresql://metre@127.0.0.1:{free_port()}/metre"
    async with _client(Settings(read_database_url=SecretStr(nobody)), metre_api.store) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "up", "read_database": "down"}
        metric = await client.get(f"/api/v1/repos/{repo_id}/metrics/activity")
        assert metric.status_code == 503
        assert metric.headers["retry-after"]
        registry = await client.get(f"/api/v1/repos/{repo_id}")
        assert registry.status_code == 200


def test_the_setting_reads_metre_read_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRE_READ_DATABASE_URL", "postgresql://metre@replica:5432/metre")
    value = Settings().read_database_url
    assert value is not None
    assert value.get_secret_value() == "postgresql://metre@replica:5432/metre"
    monkeypatch.delenv("METRE_READ_DATABASE_URL")
    assert Settings().read_database_url is None
