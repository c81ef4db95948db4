"""An in-process metre over real parts, for API tests against the git oracle (I/O).

`metre_api` (function scope) gives a `MetreApi`: a fresh migrated PostgreSQL database (the
`store` fixture), an `InMemoryBus`, a running `Processor` publishing metric-update events, and
an `httpx.AsyncClient` on `create_app(settings, store)` through `httpx.ASGITransport` (no
sockets). `await metre_api.ingest(path)` registers a local repository, polls it once with the
real `ingest.poller.Poller` (dulwich) and returns its id once the processor has applied every
event. Nothing is mocked: use it for any metric endpoint test (`testkit/oracle.py` has the
git-CLI expectations).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from api.app import create_app
from ingest.bus import InMemoryBus
from ingest.poller import Poller, PollerConfig
from metre.settings import Settings
from processors.runner import Processor
from processors.store import PgStore

COMMITS, DLQ, UPDATES = "t.commits", "t.commits.dlq", "t.metric-updates"


@dataclass
class MetreApi:
    client: httpx.AsyncClient
    store: PgStore
    bus: InMemoryBus
    poller: Poller
    processor: Processor

    async def ingest(self, path: Path, timeout: float = 60.0) -> int:
        """Register `path`, poll it once, wait until every published event is handled."""
        row = await self.store.add_repo(str(path), None)
        await self.poll(row.id, timeout)
        return row.id

    async def poll(self, repo_id: int, timeout: float = 60.0) -> None:
        """Poll `repo_id` now (again) and wait until the processor caught up."""
        await self.store.request_poll(repo_id)
        claimed = await self.store.claim_due_repo(60)
        assert claimed is not None
        assert claimed.id == repo_id
        await self.poller.poll(claimed)
        repo = await self.store.get_repo(repo_id)
        assert repo is not None
        assert repo.state == "idle", repo
        async with asyncio.timeout(timeout):
            while self.processor.handled < self.poller.published:
                await asyncio.sleep(0.02)

    async def updates(self) -> list[dict[str, object]]:
        """Every metric-update event published so far, in partition then offset order."""
        consumer = self.bus.consumer([UPDATES], f"reader-{id(self)}-{self.processor.batches}")
        await consumer.start()
        try:
            out = []
            while records := await consumer.fetch(1000, 0.05):
                out.extend(orjson.loads(r.value) for r in records)
            return out
        finally:
            await consumer.stop()


@pytest.fixture
async def metre_api(store: PgStore, tmp_path: Path) -> AsyncIterator[MetreApi]:
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics([COMMITS, DLQ, UPDATES])
    poller = Poller(bus, store, PollerConfig(mirrors_dir=tmp_path / "mirrors", topic=COMMITS))
    processor = Processor(
        bus, store, COMMITS, "t-processors", 500, DLQ, fetch_timeout=0.05, updates_topic=UPDATES
    )
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    app = create_app(Settings(data_dir=tmp_path), store)  # its mirrors_dir is the poller's
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://metre") as client:
            yield MetreApi(client, store, bus, poller, processor)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await bus.stop()
