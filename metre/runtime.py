"""Topology (I/O): which tasks each role of metre runs, under one supervisor per process.

`metre up` runs every role in one process (`run_all`); `metre poller|processor|api|notifier`
run one, once its store and bus answer. What the tasks are made of comes from metre/wiring.py,
their loops from metre/passes.py, how they start, end and stop from metre/supervisor.py;
nothing here computes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from metre import errors, passes
from metre.contracts import outage
from metre.contracts.bus import Bus, InMemoryBus
from metre.contracts.retry import RetryStopped, is_transient
from metre.health import KafkaProbe, data_loss_probe
from metre.healthport import consumer_probe, health_port
from metre.ingest.poller import Poller
from metre.ingest.reconcile import Reconciled
from metre.processors.lag import GroupLag
from metre.processors.runner import Processor
from metre.processors.store import PgStore, SchemaTooNew
from metre.readiness import Probe
from metre.serving import api_url, bind_socket, serve_api
from metre.settings import Settings
from metre.supervisor import Stage, Supervisor
from metre.wiring import (
    REFUSED,
    ConfigurationError,
    all_topics,
    bus_probe,
    commits_topic,
    make_notifier,
    make_poller,
    make_processor,
    open_bus,
    open_store,
    poller_watch,
    processor_group,
    processor_watch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def runtime_file(settings: Settings) -> Path:
    """Where `metre add` and `metre status` find the running `metre up`."""
    return settings.data_dir / "api.json"


def write_runtime_file(settings: Settings, url: str) -> Path:
    path = runtime_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"url": url}))
    return path


async def run_all(
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
    *,
    port_search: int = 100,
) -> list[str]:
    """Every role in this process: poller, processor and API over one store and one bus.

    Stops in the safe order (metre/supervisor.py): the poller's stage first, then the
    processor's once it has drained what was published (an in-process bus does not survive
    the process), then the API. A role that ends by itself ends the run the same way.
    Returns the tasks that ended the run (none when `stop` did).
    """
    sock = bind_socket(settings.host, settings.port, search=port_search)
    if settings.database_url is None:
        from metre.pg import become_subreaper

        become_subreaper()  # the embedded postmaster is then ours to reap (supervise_embedded)
    async with open_store(settings, migrate=True) as store, open_bus(settings) as bus:
        # This process is the only poller: a lease left by a crash of the last run is stale.
        await store.release_leases()
        poller = make_poller(settings, bus, store)
        processor = make_processor(settings, bus, store)
        probe = bus_probe(settings, bus)
        url = api_url(sock)

        async def drain() -> None:
            await passes.drain(lambda: processor.handled >= poller.published, timeout=30.0)

        async def forget_url() -> None:
            runtime_file(settings).unlink(missing_ok=True)

        def ready() -> None:
            write_runtime_file(settings, url)
            if on_ready is not None:
                on_ready(url)

        sup = Supervisor()
        polling = sup.stage("poller", after=drain)
        _polling(sup, polling, settings, bus, store, poller)
        processing = sup.stage("processor")
        sup.add(processing, "processor", processor.run)
        if isinstance(bus, InMemoryBus):  # a broker keeps its records itself
            memory = bus
            sup.add(processing, "trim", lambda s: passes.trim_loop(memory, s))
        notifier = make_notifier(settings, bus, store)
        sup.add(processing, "notifier", notifier.run)
        serving = sup.stage("api", after=forget_url)
        readiness = {"bus": probe, "data_loss": data_loss_probe(lambda: store)}
        lag = GroupLag(bus, commits_topic(settings), processor_group(settings))
        sup.add(
            serving,
            "api",
            lambda s: serve_api(settings, store, sock, s, readiness, ("database", "bus"), lag),
        )
        if settings.database_url is None:
            sup.add(
                sup.stage("pg"),
                "pg",
                lambda s: passes.supervise_embedded(settings.pgdata_dir, s),
                watched=False,
            )
        try:
            ended = await sup.run(stop, started=ready)
        finally:
            if isinstance(probe, KafkaProbe):
                await probe.close()
            for measure in (lag, notifier.lag):  # their Kafka clients, if they opened any
                if measure is not None:
                    await measure.close()
    if settings.database_url is None:
        # Explicitly, not at interpreter exit: a stop must stop the embedded server.
        from metre.pg import stop_embedded

        await asyncio.to_thread(stop_embedded, settings.pgdata_dir)
    return ended


async def run_reconcile(settings: Settings, report: Callable[[Reconciled], None]) -> None:
    """One anti-entropy pass against the configured store and bus (`metre reconcile`)."""
    async with open_store(settings) as store, open_bus(settings) as bus:
        for r in await passes.reconcile_once(settings, bus, store):
            report(r)


def quiet_outages(settings: Settings) -> None:
    """Bounded logs while a dependency is away (metre/contracts/outage.py), aiokafka's included."""
    import aiokafka.admin.client
    import aiokafka.consumer.fetcher
    import aiokafka.consumer.group_coordinator
    import aiokafka.producer.sender  # noqa: F401

    outage.configure(settings.outage_summary_interval)
    outage.throttle_loggers("aiokafka")


RoleTasks = Callable[[Supervisor, Bus, PgStore], None]
"""Declares a distributed role's stages and tasks once its store and bus are open."""


async def _distributed(
    settings: Settings,
    role: str,
    stop: asyncio.Event,
    tasks: RoleTasks,
    probes: Mapping[str, Probe] | None = None,
) -> list[str]:
    """A distributed role: its health port from the start (with `probes`), its store and bus
    once they answer (waiting for them until `stop`), then its tasks under one supervisor.
    Returns the tasks that ended the run (none when `stop` did, waiting included)."""
    _require_distributed(settings, role)
    quiet_outages(settings)
    async with health_port(settings, role) as health, contextlib.AsyncExitStack() as stack:
        health.probes.update(probes or {})
        with contextlib.suppress(RetryStopped):  # stopped while waiting for a dependency
            store = await stack.enter_async_context(open_store(settings, stop))
            health.store = store
            bus = await stack.enter_async_context(open_bus(settings, stop))
            sup = Supervisor()
            tasks(sup, bus, store)
            return await sup.run(stop)
    return []


def _polling(
    sup: Supervisor, stage: Stage, settings: Settings, bus: Bus, store: PgStore, poller: Poller
) -> None:
    """The poller's tasks: its polls, anti-entropy, the removals' outbox and its bus watch."""
    sup.add(stage, "poller", poller.run)
    sup.add(stage, "reconcile", lambda s: passes.reconcile_loop(settings, bus, store, s))
    sup.add(stage, "removals", lambda s: passes.removal_loop(settings, bus, store, s))
    sup.add(stage, "watch", poller_watch(settings, bus, store).run)


async def run_poller(settings: Settings, stop: asyncio.Event) -> list[str]:
    """The poller role, and anti-entropy every `reconcile_interval` (and at start): a broker
    that lost its topics is healed by whichever poller reconciles first (more are harmless).
    Waits for PostgreSQL and the broker when they are not up yet."""

    def tasks(sup: Supervisor, bus: Bus, store: PgStore) -> None:
        poller = make_poller(settings, bus, store)
        _polling(sup, sup.stage("poller"), settings, bus, store, poller)

    return await _distributed(settings, "poller", stop, tasks)


async def run_processor(settings: Settings, stop: asyncio.Event) -> list[str]:
    """The processor role; on `stop` it finishes its batch, commits, and leaves the group."""
    current: Processor | None = None

    def tasks(sup: Supervisor, bus: Bus, store: PgStore) -> None:
        nonlocal current
        processor = current = make_processor(settings, bus, store)
        processing = sup.stage("processor")
        sup.add(processing, "processor", processor.run)
        sup.add(processing, "watch", processor_watch(settings, bus, store, processor).run)

    probes = {"consumer": consumer_probe(lambda: current)}
    return await _distributed(settings, "processor", stop, tasks, probes)


async def run_notifier(settings: Settings, stop: asyncio.Event) -> list[str]:
    """The notifier role: one replica evaluates and delivers, the others wait as standbys."""

    def tasks(sup: Supervisor, bus: Bus, store: PgStore) -> None:
        notifier = make_notifier(settings, bus, store)

        async def close_lag() -> None:
            if notifier.lag is not None:
                await notifier.lag.close()

        sup.add(sup.stage("notifier", after=close_lag), "notifier", notifier.run)

    return await _distributed(settings, "notifier", stop, tasks)


async def run_api(settings: Settings, stop: asyncio.Event) -> list[str]:
    _require_distributed(settings, "api")
    probes: dict[str, Probe] = {}
    lag: GroupLag | None = None
    if settings.kafka_bootstrap:  # the lag of /api/v1/pipeline (admin requests, no producer)
        from metre.ingest.kafka_bus import KafkaBus

        lag = GroupLag(
            KafkaBus(settings.kafka_bootstrap, settings.partitions),
            commits_topic(settings),
            processor_group(settings),
        )
    if settings.kafka_bootstrap:
        # Not required: reads go on while the broker is away (the API is then `degraded`).
        probes["bus"] = KafkaProbe(settings.kafka_bootstrap, all_topics(settings))
    try:
        with contextlib.suppress(RetryStopped):  # stopped while waiting for PostgreSQL
            async with open_store(settings, stop) as store:
                probes["data_loss"] = data_loss_probe(lambda: store)
                sock = bind_socket(settings.host, settings.port)
                log.info("metre api listening on %s", api_url(sock))
                sup = Supervisor()
                sup.add(
                    sup.stage("api"),
                    "api",
                    lambda s: serve_api(settings, store, sock, s, probes, lag=lag),
                )
                return await sup.run(stop)
        return []
    finally:
        if lag is not None:
            await lag.close()
        for probe in probes.values():
            if isinstance(probe, KafkaProbe):
                await probe.close()


async def run_migrate(settings: Settings) -> list[str]:
    """Apply pending migrations and return their files (`metre migrate`): one attempt, a
    clear line if PostgreSQL cannot be reached."""
    if settings.database_url is None:
        raise ConfigurationError(
            "metre migrate needs METRE_DATABASE_URL (the embedded PostgreSQL of `metre up` is "
            "migrated by `metre up` itself)"
        )
    dsn = settings.database_url.get_secret_value()
    store = None
    try:
        store = await PgStore.connect(dsn, min_size=1, max_size=1)
        return await store.migrate()
    except REFUSED as exc:
        raise errors.database_refused(dsn, exc) from exc
    except SchemaTooNew as exc:
        raise errors.schema_mismatch(
            exc.found, exc.known, where=f"the database at {errors.where(dsn)}"
        ) from exc
    except Exception as exc:
        if isinstance(exc, errors.StartupError) or not is_transient(exc):
            raise
        raise errors.database_unreachable(dsn, exc) from exc
    finally:
        if store is not None:
            await store.close()


def _require_distributed(settings: Settings, role: str) -> None:
    missing = [
        name
        for name, value in (
            ("METRE_DATABASE_URL", settings.database_url),
            ("METRE_KAFKA_BOOTSTRAP", settings.kafka_bootstrap if role != "api" else "n/a"),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(
            f"metre {role} runs as a distributed role and needs {' and '.join(missing)}; "
            "to run everything on this machine, use `metre up`"
        )


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
