"""The health port of a distributed role (I/O): /healthz, /readyz and /metrics served from
before the role connects to anything until after its tasks stopped (metre/health.py has the
app and the probes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from metre import errors
from metre.health import KafkaProbe, data_loss_probe, health_app, store_probe
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from metre.readiness import Check, Probe
from metre.serving import api_url, bind_socket, serve_asgi
from metre.settings import Settings
from metre.wiring import all_topics

log = logging.getLogger(__name__)


class RoleHealth:
    """What a distributed role's health port reports; `store` is set once it is open, and a
    role may add probes (not required ones: they can only make it `degraded`)."""

    def __init__(self) -> None:
        self.store: PgStore | None = None
        self.probes: dict[str, Probe] = {}


def consumer_probe(processor: Callable[[], Processor | None]) -> Probe:
    """A processor that owns no partition does nothing: `degraded`, named (more processors
    than partitions, or a rebalance under way). Registered before the role connects, so
    `/readyz` is never `ready` in the moment between the bus coming up and the consumer
    existing."""

    async def probe() -> Check:
        current = processor()
        consumer = None if current is None else current.consumer
        if consumer is None:
            return Check("degraded", "not started")
        if not consumer.assignment():
            return Check("degraded", "owns no partition (joining, or more processors than "
                         "partitions)")  # fmt: skip
        return Check("up")

    return probe


@contextlib.asynccontextmanager
async def health_port(settings: Settings, role: str) -> AsyncIterator[RoleHealth]:
    """Serve /healthz, /readyz and /metrics on METRE_HEALTH_PORT (0: none) while the role
    runs, from before it connects to anything: the database and the bus are required."""
    health = RoleHealth()
    if settings.health_port == 0:
        yield health
        return
    try:
        sock = bind_socket(settings.health_host, settings.health_port)
    except errors.StartupError as exc:
        raise errors.health_port_unusable(
            settings.health_host, settings.health_port, exc.__cause__
        ) from exc
    assert settings.kafka_bootstrap is not None  # distributed roles only
    kafka = KafkaProbe(settings.kafka_bootstrap, all_topics(settings))
    probes = health.probes
    probes.update(
        database=store_probe(lambda: health.store),
        bus=kafka,
        data_loss=data_loss_probe(lambda: health.store),
    )
    app = health_app(role, probes, frozenset(probes), lambda: health.store)
    stop = asyncio.Event()
    quiet = "warning" if settings.log_level.upper() != "DEBUG" else "debug"
    server = asyncio.create_task(serve_asgi(app, sock, stop, quiet, "off"), name="health")
    log.info("metre %s health on %s (/healthz, /readyz, /metrics)", role, api_url(sock))
    try:
        yield health
    finally:
        stop.set()
        await asyncio.gather(server, return_exceptions=True)
        await kafka.close()
