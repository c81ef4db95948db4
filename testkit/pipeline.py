"""A whole metre pipeline in this process (I/O): the real poller (dulwich) and processor over an
`InMemoryBus` and a real PostgreSQL store, and the HTTP API on `create_app` through
`httpx.ASGITransport` (no sockets). Nothing is mocked; tests and benchmarks drive it poll by
poll, and every wait for the processor goes through `wait_applied`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from metre.api.app import create_app
from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from metre.settings import Settings

COMMITS, DLQ, UPDATES = "t.commits", "t.commits.dlq", "t.metric-updates"
GROUP = "t-processors"
LEASE = 600
"""Seconds a harness poll holds its repository (nobody else claims it here)."""


async def wait_applied(
    processor: Processor,
    target: int | Callable[[], int],
    timeout: float = 60.0,
    every: float = 0.02,
) -> None:
    """Wait until `processor` has handled `target` events (a count, or read at each check: the
    poller's `published`); they are then committed in PostgreSQL. TimeoutError past `timeout`.
    The processor counts events, not a signal, so this checks every `every` seconds."""
    goal = target if callable(target) else (lambda: target)
    async with asyncio.timeout(timeout):
        while processor.handled < goal():
            await asyncio.sleep(every)


@dataclass
class Pipeline:
    client: httpx.AsyncClient
    store: PgStore
    bus: InMemoryBus
    poller: Poller
    processor: Processor

    async def applied(self, timeout: float = 60.0) -> None:
        """Until the processor has handled every event the poller published."""
        await wait_applied(self.processor, lambda: self.poller.published, timeout)

    async def ingest(self, path: Path, timeout: float = 60.0, branch: str | None = None) -> int:
        """Register `path` (on `branch`, else its head), poll it once, wait until every
        published event is handled."""
        row = await self.store.add_repo(str(path), branch)
        await self.poll(row.id, timeout)
        return row.id

    async def poll(self, repo_id: int, timeout: float = 60.0) -> None:
        """Poll `repo_id` now (again) and wait until the processor caught up."""
        await self.store.request_poll(repo_id)
        claimed = await self.store.claim_due_repo(LEASE)
        assert claimed is not None
        assert claimed.id == repo_id
        await self.poller.poll(claimed)
        repo = await self.store.get_repo(repo_id)
        assert repo is not None
        assert repo.state == "idle", repo
        await self.applied(timeout)

    async def sync(self, repo_id: int, timeout: float = 60.0) -> None:
        """Poll `repo_id` now and every other repository due, wait until the processor handled
        every published event, and check that none of them was poison."""
        await self.store.request_poll(repo_id)
        polled = 0
        while (row := await self.store.claim_due_repo(LEASE)) is not None:
            await self.poller.poll(row)
            polled += 1
        assert polled, "the repository was not due"
        repo = await self.store.get_repo(repo_id)
        assert repo is not None
        assert repo.state == "idle", repo.error
        await self.applied(timeout)
        assert self.processor.poison == 0

    async def updates(self) -> list[dict[str, object]]:
        """Every metric-update event published so far, in partition then offset order."""
        consumer = self.bus.consumer([UPDATES], f"reader-{id(self)}-{self.processor.batches}")
        await consumer.start()
        try:
            out: list[dict[str, object]] = []
            while records := await consumer.fetch(1000, 0.05):
                out.extend(orjson.loads(r.value) for r in records)
            return out
        finally:
            await consumer.stop()


@contextlib.asynccontextmanager
async def pipeline(
    store: PgStore,
    data_dir: Path,
    *,
    partitions: int = 2,
    batch: int = 500,
    chunk: int | None = None,
    release_tags: tuple[str, ...] = (),
) -> AsyncIterator[Pipeline]:
    """The pipeline over `store`, with mirrors under `data_dir` (the API's settings point at the
    same ones). Small `chunk` and `batch` make one poll's retractions and additions span
    several publishes and batches."""
    settings = Settings(data_dir=data_dir)
    bus = InMemoryBus(partitions=partitions)
    await bus.start()
    await bus.ensure_topics([COMMITS, DLQ, UPDATES])
    config = PollerConfig(
        mirrors_dir=settings.mirrors_dir, topic=COMMITS, release_tags=release_tags
    )
    if chunk is not None:
        config = dataclasses.replace(config, chunk=chunk)
    poller = Poller(bus, store, config)
    processor = Processor(
        bus, store, COMMITS, GROUP, batch, DLQ, fetch_timeout=0.05, updates_topic=UPDATES
    )
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    transport = httpx.ASGITransport(app=create_app(settings, store))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://metre") as client:
            yield Pipeline(client, store, bus, poller, processor)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await bus.stop()
