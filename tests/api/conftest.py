"""The in-process metre of testkit/pipeline.py as a fixture, for API tests against the git
oracle (I/O).

`metre_api` (function scope) gives a `Pipeline`: a fresh migrated PostgreSQL database (the
`store` fixture), an `InMemoryBus`, a running `Processor` publishing metric-update events, and
an `httpx.AsyncClient` on `create_app(settings, store)` through `httpx.ASGITransport` (no
sockets). `await metre_api.ingest(path)` registers a local repository, polls it once with the
real `metre.ingest.poller.Poller` (dulwich) and returns its id once the processor has applied every
event. Nothing is mocked: use it for any metric endpoint test (`testkit/oracle.py` has the
git-CLI expectations).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from metre.processors.store import PgStore
from testkit.pipeline import Pipeline, pipeline


@pytest.fixture
async def metre_api(store: PgStore, tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with pipeline(store, tmp_path) as p:
        yield p
