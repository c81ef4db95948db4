"""A whole metre pipeline in the test's process (I/O): the real poller and processor over the
in-process bus and a real PostgreSQL, plus the HTTP API over ASGI, driven poll by poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from metre.api.app import create_app
from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from metre.settings import Settings

TOPIC = "metre.commits"
DLQ = "metre.commits.dlq"


@dataclass
class Pipeline:
    store: PgStore
    poller: Poller
    processor: Processor
    api: httpx.AsyncClient

    async def sync(self, repo_id: int, timeout: float = 60.0) -> None:
        """Poll `repo_id` now, then wait until the processor handled every published event."""
        await self.store.request_poll(repo_id)
        polled = 0
        while (row := await self.store.claim_due_repo(60)) is not None:
            await self.poller.poll(row)
            polled += 1
        assert polled, "the repository was not due"
        row = await self.store.get_repo(repo_id)
        assert row is not None
        assert row.state == "idle", row.error
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.processor.handled < self.poller.published:
            assert loop.time() < deadline, "the processor did not catch up"
            await asyncio.sleep(0.02)
        assert self.processor.poison == 0


@contextlib.asynccontextmanager
async def pipeline(
    store: PgStore, root: Path, *, chunk: int = 7, batch: int = 10
) -> AsyncIterator[Pipeline]:
    """Small chunks and batches, so one poll's retractions and additions span several."""
    bus = InMemoryBus(partitions=4)
    await bus.start()
    await bus.ensure_topics([TOPIC, DLQ])
    poller = Poller(
        bus, store, PollerConfig(mirrors_dir=root / "mirrors", topic=TOPIC, chunk=chunk)
    )
    processor = Processor(bus, store, TOPIC, "processors", batch, DLQ, fetch_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    settings = Settings(data_dir=root / "data")
    transport = httpx.ASGITransport(app=create_app(settings, store))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as api:
            yield Pipeline(store, poller, processor, api)
    finally:
        stop.set()
        await task
        await bus.stop()
