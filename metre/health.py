"""The health port of `metre poller` and `metre processor` (METRE_HEALTH_PORT, default 8081):
`/healthz`, `/readyz` and `/metrics`, and the probes and gauges every role shares.

The server is a small Starlette app under the same uvicorn the API runs on: no new dependency,
HTTP parsing, keep-alive and a clean stop already solved (a hand-written asyncio server would be
new code to get right; aiohttp a second HTTP stack). It starts before the role connects to
anything, so while PostgreSQL or the broker is not up yet `/healthz` answers (the process is
alive, waiting) and `/readyz` says which dependency is missing.

- `/healthz`: 200 `{"status": "ok", "role": ...}` while the event loop answers.
- `/readyz`: metre.readiness: 200 `ready` or `degraded` (named), 503 `unavailable`.
- `/metrics`: prometheus_client's default registry in the text format; the database-derived
  gauges (repositories by state, dead letters stored) are refreshed at each scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metre.processors.busmarks import data_loss_status
from metre.readiness import Check, Probe, run_checks

log = logging.getLogger(__name__)

REPO_STATES = ("pending", "polling", "idle", "failed", "paused", "abandoned")
REPOSITORIES = Gauge(
    "metre_repositories",
    "Registered repositories by state (read from the database at each scrape: every process "
    "that serves /metrics reports the same values; aggregate with max, not sum).",
    ["state"],
)
DEAD_LETTERS_STORED = Gauge(
    "metre_dead_letters_stored",
    "Poison records ever dead-lettered by any processor, as stored in the database.",
)
READY = Gauge(
    "metre_ready_check",
    "State of each readiness check at the last /readyz or scrape: 1 up, 0.5 degraded, 0 down.",
    ["check"],
)
_STATE_VALUE = {"up": 1.0, "degraded": 0.5, "down": 0.0}

StoreGetter = Callable[[], Any]
"""Returns the role's PgStore once it is open, or None while it is still connecting."""


async def refresh_database_gauges(store: Any, timeout: float = 2.0) -> None:
    """Repositories by state and dead letters stored, from the database (best effort: on
    failure the last values stay)."""
    if store is None:
        return
    try:
        async with asyncio.timeout(timeout):
            rows = await store.pool.fetch("SELECT state, count(*) AS n FROM repos GROUP BY state")
            dead = await store.pool.fetchval("SELECT count(*) FROM dead_letters")
    except Exception as exc:  # noqa: BLE001 (a scrape must answer even when the database is away)
        log.debug("database gauges not refreshed: %r", exc)
        return
    counts = {state: 0 for state in REPO_STATES}
    counts.update({str(r["state"]): int(r["n"]) for r in rows})
    for state, n in counts.items():
        REPOSITORIES.labels(state).set(n)
    DEAD_LETTERS_STORED.set(int(dead or 0))


def record_readiness(checks: Mapping[str, Check]) -> None:
    for name, check in checks.items():
        READY.labels(name).set(_STATE_VALUE[check.state])


def metrics_body() -> bytes:
    return generate_latest(REGISTRY)


_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("metre_probing", default=False)


class _NotWhileProbing(logging.Filter):
    """Drops aiokafka's records made on behalf of the readiness probe: a probe every few seconds
    would otherwise log a line each while the broker is away (the probe logs the change)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _PROBING.get()


_QUIET = _NotWhileProbing()
for _name in ("aiokafka", "aiokafka.client", "aiokafka.conn"):
    logging.getLogger(_name).addFilter(_QUIET)


class KafkaProbe:
    """Is the broker there, and does it hold metre's topics? One metadata request for every
    topic (never for named ones: a broker may create a named topic it lost on such a request,
    hiding the loss). A missing topic is `degraded`, named. One line when the answer changes,
    none per probe."""

    def __init__(self, bootstrap: str, topics: Sequence[str], timeout_ms: int = 2000) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.timeout_ms = timeout_ms
        self._client: Any = None
        self._last = Check("up")

    async def __call__(self) -> Check:
        token = _PROBING.set(True)
        try:
            check = await self._probe()
        finally:
            _PROBING.reset(token)
        if check != self._last:
            if check.state == "up":
                log.info("the broker at %s answers again", self.bootstrap)
            else:
                log.warning("readiness: bus %s (%s)", check.state, check.detail)
            self._last = check
        return check

    async def _probe(self) -> Check:
        from aiokafka.client import AIOKafkaClient
        from aiokafka.errors import KafkaError

        try:
            if self._client is None:
                client = AIOKafkaClient(
                    bootstrap_servers=self.bootstrap,
                    client_id="metre-readiness",
                    request_timeout_ms=self.timeout_ms,
                )
                try:
                    await client.bootstrap()
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            metadata = await self._client.fetch_all_metadata()
        except (KafkaError, OSError) as exc:
            return Check("down", f"broker at {self.bootstrap}: {type(exc).__name__}")
        missing = sorted(set(self.topics) - set(metadata.topics()))
        if missing:
            return Check("degraded", f"topics missing on the broker: {', '.join(missing)}")
        return Check("up")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


def store_probe(get_store: StoreGetter) -> Probe:
    """The database check of a role whose store may not be open yet."""

    async def probe() -> Check:
        store = get_store()
        if store is None:
            return Check("down", "connecting")
        return Check("up") if await store.ping() else Check("down")

    return probe


def data_loss_probe(get_store: StoreGetter) -> Probe:
    """A degraded state while a data loss on the bus is not healed or repositories lag: the
    role works, but what is served is behind (docs/reliability.md, data loss on the bus)."""

    async def probe() -> Check:
        store = get_store()
        if store is None:  # the database check says so: this one is not down for it too
            return Check("up")
        status = await data_loss_status(store.pool)
        said = []
        if status.unhealed:
            said.append(f"{status.unhealed} data loss on the bus not healed yet")
        if status.lagging:
            said.append(f"{status.lagging} repositories lagging")
        return Check("degraded", "; ".join(said)) if said else Check("up")

    return probe


def health_app(
    role: str,
    probes: Mapping[str, Probe],
    required: frozenset[str],
    get_store: StoreGetter,
) -> Starlette:
    """The health port's application."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "role": role})

    async def readyz(_: Request) -> Response:
        readiness = await run_checks(probes, required)
        record_readiness(readiness.checks)
        return JSONResponse({**readiness.body(), "role": role}, status_code=readiness.http_status)

    async def metrics(_: Request) -> Response:
        await refresh_database_gauges(get_store())
        return Response(metrics_body(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET", "HEAD"]),
        ]
    )
