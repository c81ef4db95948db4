"""Wiring (I/O): build the store, the bus and each role from one Settings object, and run them.

`metre up` runs every role in one process (`run_all`); `metre poller|processor|api` run one.
Nothing here computes anything: it connects parts and stops them in a safe order.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
import orjson
import uvicorn

from metre import errors
from metre.api.app import create_app
from metre.api.server import server_config
from metre.contracts import outage
from metre.contracts.bus import Bus, BusError, InMemoryBus
from metre.contracts.retry import DEPENDENCY, Backoff, RetryStopped, is_transient, retry
from metre.health import KafkaProbe, data_loss_probe, health_app, store_probe
from metre.ingest.buswatch import BusWatch
from metre.ingest.credentials import CredentialsError, load_credentials
from metre.ingest.deadlines import FetchDeadlines
from metre.ingest.heal import Healed, heal
from metre.ingest.mirror import FetchAccess
from metre.ingest.poller import Poller, PollerConfig
from metre.ingest.reconcile import Reconciled, reconcile_all
from metre.ingest.stopping import unless_stopped
from metre.ingest.transport import SshReuse
from metre.processors.busmarks import BusMarks
from metre.processors.database import SchemaNotCurrent, SchemaTooNew
from metre.processors.lag import GroupLag
from metre.processors.notifier import Notifier, NotifyConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from metre.readiness import Check, Probe
from metre.settings import Settings

log = logging.getLogger(__name__)


def processor_group(settings: Settings) -> str:
    """The consumer group of processors, namespaced by the topic prefix like the topics."""
    return f"{settings.topic_prefix}-processors"


T = TypeVar("T")


class ConfigurationError(Exception):
    """The settings do not allow this role to run; the message says what to set."""


def commits_topic(settings: Settings) -> str:
    return settings.topic("commits")


def dlq_topic(settings: Settings) -> str:
    return settings.topic("commits.dlq")


def updates_topic(settings: Settings) -> str:
    """Metric-update events: one per repository and processed batch (docs/events.md)."""
    return settings.topic("metric-updates")


async def database_dsn(settings: Settings) -> str:
    """The configured PostgreSQL, or the embedded one under the data directory."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from metre.pg import start_embedded

    return await asyncio.to_thread(start_embedded, settings.pgdata_dir)


_REFUSED = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,  # no such role, pg_hba refuses
    asyncpg.InvalidCatalogNameError,  # no such database
)


async def until_up(what: str, op: Callable[[], Awaitable[T]], stop: asyncio.Event | None) -> T:
    """Run `op` until it succeeds, waiting between transient failures (PostgreSQL or the
    broker not up yet, or restarting) by the roles' one policy, so a role started before its
    dependencies waits instead of crash-looping. Without `stop` (one-shot commands), the
    first failure raises."""
    if stop is None:
        return await op()
    return await retry(op, DEPENDENCY, stop=stop, what=what, log=log)


def _schema_error(dsn: str, exc: SchemaNotCurrent) -> errors.StartupError:
    where = f"the database at {errors.where(dsn)}"
    if exc.kind == "missing":
        return errors.schema_missing(where)
    if exc.kind == "unknown":
        return errors.schema_unknown(exc.unknown, where)
    return errors.schema_mismatch(exc.found, exc.known, where=where)


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, stop: asyncio.Event | None = None, *, migrate: bool = False
) -> AsyncIterator[PgStore]:
    """The store, once PostgreSQL answers (waiting for it while `stop` is given). With
    `migrate` (metre up, metre migrate) pending migrations are applied; otherwise the schema
    must be exactly this code's (distributed roles: `metre migrate` runs before them)."""
    dsn = await database_dsn(settings)

    async def connect() -> PgStore:
        try:
            store = await PgStore.connect(dsn)
        except _REFUSED as exc:  # waiting does not fix a password
            raise errors.database_refused(dsn, exc) from exc
        try:
            if migrate:
                applied = await store.migrate()
                if applied:
                    log.info("migrated the database: %s", ", ".join(applied))
            else:
                await store.check_schema()
        except SchemaTooNew as exc:
            await store.close()
            raise errors.schema_mismatch(exc.found, exc.known) from exc
        except SchemaNotCurrent as exc:
            await store.close()
            raise _schema_error(dsn, exc) from exc
        except BaseException:
            await store.close()
            raise
        return store

    try:
        store = await until_up("PostgreSQL", connect, stop)
    except Exception as exc:
        # Only a one-shot start gets here with a connection error (roles wait instead).
        if isinstance(exc, errors.StartupError) or not is_transient(exc):
            raise
        raise errors.database_unreachable(dsn, exc) from exc
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def open_bus(settings: Settings, stop: asyncio.Event | None = None) -> AsyncIterator[Bus]:
    bus: Bus
    if settings.kafka_bootstrap:
        from metre.ingest.kafka_bus import KafkaBus

        bus = KafkaBus(
            settings.kafka_bootstrap,
            partitions=settings.partitions,
            session_timeout_ms=settings.consumer_session_timeout_ms,
        )
    else:
        bus = InMemoryBus(partitions=settings.partitions)
    try:
        # A one-shot start says what is wrong in one line: aiokafka's own line per failed
        # connection would only repeat it (roles that wait keep it).
        quiet = _quiet("aiokafka") if stop is None else contextlib.nullcontext()
        try:
            with quiet:
                await until_up("the bus", bus.start, stop)
                await until_up("the bus", lambda: bus.ensure_topics(all_topics(settings)), stop)
        except BusError as exc:  # a one-shot start (roles wait instead)
            raise errors.broker_unreachable(settings.kafka_bootstrap or "", exc) from exc
        yield bus
    finally:
        await bus.stop()


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only critical records of `logger` while the block runs (unless debugging)."""
    lg = logging.getLogger(logger)
    if lg.getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    old = lg.level
    lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        lg.setLevel(old)


def all_topics(settings: Settings) -> list[str]:
    return [commits_topic(settings), dlq_topic(settings), updates_topic(settings)]


def fetch_access(settings: Settings) -> FetchAccess:
    """The URL policy and the credentials every fetch of this process uses."""
    credentials = {}
    if settings.credentials_file is not None:
        try:
            credentials = load_credentials(settings.credentials_file)
        except CredentialsError as exc:
            raise ConfigurationError(str(exc)) from None
    deadlines = FetchDeadlines(
        connect=settings.fetch_connect_timeout,
        idle=settings.fetch_idle_timeout,
        total=settings.fetch_timeout,
    )
    return FetchAccess(
        policy=settings.url_policy,
        credentials=credentials,
        ca_file=settings.ca_file,
        deadlines=deadlines,
        ssh_reuse=SshReuse(settings.ssh_control_dir, settings.ssh_reuse)
        if settings.ssh_reuse
        else None,
    )


def make_poller(settings: Settings, bus: Bus, store: PgStore) -> Poller:
    config = PollerConfig(
        mirrors_dir=settings.mirrors_dir,
        topic=commits_topic(settings),
        poll_interval=settings.poll_interval,
        access=fetch_access(settings),
        workers=settings.ingest_workers,
        retry_cap=settings.retry_cap,
        give_up_after=settings.give_up_after,
        concurrency=settings.poll_concurrency,
        release_tags=settings.release_patterns,
    )
    return Poller(bus, store, config)


def notifier_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}-notifiers"


def make_notifier(settings: Settings, bus: Bus, store: PgStore) -> Notifier:
    config = NotifyConfig(
        policy=settings.url_policy,
        check_interval=settings.notify_check_interval,
        digest_interval=settings.notify_digest_interval,
        max_attempts=settings.notify_max_attempts,
        retry_cap=settings.notify_retry_cap,
    )
    return Notifier(
        store,
        config,
        bus=bus,
        updates_topic=updates_topic(settings),
        group=notifier_group(settings),
        lag=GroupLag(bus, commits_topic(settings), processor_group(settings)),
    )


def make_processor(settings: Settings, bus: Bus, store: PgStore) -> Processor:
    return Processor(
        bus=bus,
        store=store,
        topic=commits_topic(settings),
        group=processor_group(settings),
        batch_size=settings.batch_size,
        dlq_topic=dlq_topic(settings),
        updates_topic=updates_topic(settings),
    )


class _QuietServer(uvicorn.Server):
    """uvicorn inside a process whose signals metre handles itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, *, search: int = 0) -> socket.socket:
    """Bind `port`, or with `search` > 0 the first free one of the next `search` ports."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in range(port, port + search + 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise errors.cannot_listen(host, candidate, exc) from exc
            last = exc
            continue
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    if search:
        raise errors.StartupError(
            f"cannot listen on {host}: ports {port} to {port + search} are all in use; choose "
            "another with --port (METRE_PORT)"
        ) from last
    raise errors.port_in_use(host, port) from last


async def serve_api(
    settings: Settings,
    store: PgStore | None,
    sock: socket.socket,
    stop: asyncio.Event,
    readiness: Mapping[str, Probe] | None = None,
    required: Iterable[str] = ("database",),
    lag: GroupLag | None = None,
) -> None:
    app = create_app(settings, store, readiness=readiness, required=required, lag=lag)
    await serve_asgi(app, sock, stop, settings.log_level.lower())


async def serve_asgi(
    app: Any,
    sock: socket.socket,
    stop: asyncio.Event,
    log_level: str,
    lifespan: Literal["on", "off"] = "on",
) -> None:
    """Serve `app` on `sock` until `stop`. uvicorn's own log setup is skipped (log_config=None):
    its records go through metre's handler and format (metre/logs.py) like every other."""
    # Client addresses from the socket (METRE_TRUSTED_PROXIES decides forwarding), JSON 400s.
    config = server_config(
        app,
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        loop="none",
    )
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await _first_of(serving, stop)
    server.should_exit = True
    await serving


async def _first_of(task: asyncio.Task[Any], stop: asyncio.Event) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def api_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - display only
    return f"http://{shown}:{port}"


def write_runtime_file(settings: Settings, url: str) -> Path:
    """Lets `metre add` and `metre status` find the running `metre up`."""
    path = settings.data_dir / "api.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"url": url}))
    return path


async def run_all(
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
    *,
    port_search: int = 100,
) -> None:
    """Every role in this process: poller, processor and API over one store and one bus.

    Stops in the safe order: the poller first, then the processor once it has drained what was
    published (an in-process bus does not survive the process), then the API.
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
        bus_probe = _bus_probe(settings, bus)
        stop_poller, stop_processor, stop_api = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(poller.run(stop_poller), name="poller"),
            asyncio.create_task(processor.run(stop_processor), name="processor"),
            asyncio.create_task(
                serve_api(
                    settings,
                    store,
                    sock,
                    stop_api,
                    {"bus": bus_probe, "data_loss": data_loss_probe(lambda: store)},
                    ("database", "bus"),
                    GroupLag(bus, commits_topic(settings), processor_group(settings)),
                ),
                name="api",
            ),
            asyncio.create_task(
                _reconcile_loop(settings, bus, store, stop_poller), name="reconcile"
            ),
            asyncio.create_task(_trim_loop(bus, stop_processor), name="trim"),
            asyncio.create_task(_removal_loop(settings, bus, store, stop_poller), name="removals"),
            asyncio.create_task(poller_watch(settings, bus, store).run(stop_poller), name="watch"),
            asyncio.create_task(
                make_notifier(settings, bus, store).run(stop_processor), name="notifier"
            ),
        ]
        stop_pg = asyncio.Event()
        supervisor = (
            asyncio.create_task(supervise_embedded(settings.pgdata_dir, stop_pg), name="pg")
            if settings.database_url is None
            else None
        )
        url = api_url(sock)
        runtime_file = write_runtime_file(settings, url)
        if on_ready is not None:
            on_ready(url)
        try:
            done_early = asyncio.create_task(stop.wait())
            finished, _ = await asyncio.wait(
                [*tasks, done_early], return_when=asyncio.FIRST_COMPLETED
            )
            for t in finished:
                if t is not done_early and t.exception() is not None:
                    log.error("role %s stopped: %r", t.get_name(), t.exception())
        finally:
            stop_poller.set()
            await asyncio.gather(tasks[0], tasks[3], tasks[5], tasks[6], return_exceptions=True)
            await _drain(lambda: processor.handled >= poller.published, timeout=30.0)
            stop_processor.set()
            await asyncio.gather(tasks[1], tasks[4], tasks[7], return_exceptions=True)
            stop_api.set()
            await asyncio.gather(tasks[2], return_exceptions=True)
            runtime_file.unlink(missing_ok=True)
            stop_pg.set()
            if supervisor is not None:
                await asyncio.gather(supervisor, return_exceptions=True)
            if isinstance(bus_probe, KafkaProbe):
                await bus_probe.close()
    if settings.database_url is None:
        # Explicitly, not at interpreter exit: a stop must stop the embedded server.
        from metre.pg import stop_embedded

        await asyncio.to_thread(stop_embedded, settings.pgdata_dir)


async def _reconcile_loop(
    settings: Settings, bus: Bus, store: PgStore, stop: asyncio.Event
) -> None:
    """At start and then every `reconcile_interval`: heals what a crash of this process lost
    (the in-process bus does not survive it)."""
    while not stop.is_set():
        try:
            # Topics first: a broker restarted without storage lost them (and their data).
            async def one_pass() -> None:
                await bus.ensure_topics(all_topics(settings))
                await reconcile_once(settings, bus, store)

            if not await unless_stopped(one_pass(), stop):
                return  # a pass cut short is harmless: what it republished is deduplicated
        except Exception as exc:  # noqa: BLE001 (an outage postpones a pass, never the role)
            log.warning("reconciliation postponed: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.reconcile_interval)


PG_RESTART = Backoff(0.5, 5.0)
"""Waits between attempts to restart the embedded PostgreSQL after it died."""
PG_RESTART_ATTEMPTS = 12


async def supervise_embedded(pgdata: Path, stop: asyncio.Event, every: float = 0.5) -> None:
    """Restart the embedded PostgreSQL when it dies under `metre up`: one line when it is
    found down, one when it is back (or when the attempts ran out); the roles wait meanwhile
    (their retries) and the API answers 503 with Retry-After."""
    from metre.pg import EmbeddedPgError, is_running, restart_embedded

    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set() or await asyncio.to_thread(is_running, pgdata):
            continue
        log.error("the embedded PostgreSQL in %s stopped; restarting it", pgdata)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for attempt in range(PG_RESTART_ATTEMPTS):
            try:
                pid = await asyncio.to_thread(restart_embedded, pgdata)
            except EmbeddedPgError as exc:
                last = exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PG_RESTART.delay(attempt))
                if stop.is_set():
                    return
                continue
            log.warning(
                "the embedded PostgreSQL is back (pid %d) after %.1f s and %d attempts",
                pid, loop.time() - began, attempt + 1,
            )  # fmt: skip
            break
        else:
            log.error(
                "the embedded PostgreSQL did not restart after %d attempts (%s); metre keeps "
                "trying every %.0f s", PG_RESTART_ATTEMPTS, last, PG_RESTART.cap,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PG_RESTART.cap)


async def _removal_loop(
    settings: Settings, bus: Bus, store: PgStore, stop: asyncio.Event, every: float = 1.0
) -> None:
    """Publish the retractions of removed repositories and delete their mirrors
    (processors/removals.py); an outage postpones a pass, never the role."""
    from metre.processors.removals import publish_removals

    failing = False
    while not stop.is_set():
        try:
            removals = publish_removals(
                bus,
                store,
                mirrors_dir=settings.mirrors_dir,
                commits_topic=commits_topic(settings),
                updates_topic=updates_topic(settings),
            )
            if not await unless_stopped(removals, stop):
                return  # the outbox keeps what this pass did not finish
            failing = False
        except Exception as exc:  # noqa: BLE001 (the outbox keeps it for the next pass)
            # One line per outage, not one per second.
            log.log(logging.DEBUG if failing else logging.WARNING,
                    "publishing removals postponed: %r", exc)  # fmt: skip
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def _trim_loop(bus: Bus, stop: asyncio.Event, every: float = 5.0) -> None:
    """The in-process bus keeps records in memory: drop what every reader has committed."""
    if not isinstance(bus, InMemoryBus):
        return
    while not stop.is_set():
        # Wait first: the processor's group must exist before its topic counts as read.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        bus.trim(unread=True)


def quiet_outages(settings: Settings) -> None:
    """Bounded logs while a dependency is away (metre/contracts/outage.py), aiokafka's included."""
    import aiokafka.admin.client
    import aiokafka.consumer.fetcher
    import aiokafka.consumer.group_coordinator
    import aiokafka.producer.sender  # noqa: F401

    outage.configure(settings.outage_summary_interval)
    outage.throttle_loggers("aiokafka")


def poller_watch(settings: Settings, bus: Bus, store: PgStore) -> BusWatch:
    """The poller's watch: data loss on the commits topic healed by a targeted reconcile, and
    the freshness check (METRE_LAG_INTERVALS poll intervals)."""
    topic = commits_topic(settings)

    async def heal_repos(repo_ids: Sequence[int]) -> Healed:
        return await heal(bus, store, settings.mirrors_dir, topic, repo_ids)

    observer = bus if hasattr(bus, "observe") else None
    return BusWatch(
        observer,  # type: ignore[arg-type]
        BusMarks(store.pool),
        topic,
        "poller",
        settings.bus_check_interval,
        heal=heal_repos,
        lag_seconds=settings.lag_intervals * settings.poll_interval,
        ensure=lambda: bus.ensure_topics(all_topics(settings)),
    )


def processor_watch(settings: Settings, bus: Bus, store: PgStore, processor: Processor) -> BusWatch:
    """The processor's watch: a loss anyone recorded makes it read the topic again from the
    earliest offset; it also checks its group's committed offsets against the log."""
    return BusWatch(
        bus,  # type: ignore[arg-type]
        BusMarks(store.pool),
        commits_topic(settings),
        "processor",
        settings.bus_check_interval,
        committed=processor.committed,
        fetched=processor.fetched_high,
        rewind=processor.rewind,
        ensure=lambda: bus.ensure_topics(all_topics(settings)),
    )


async def reconcile_once(settings: Settings, bus: Bus, store: PgStore) -> list[Reconciled]:
    return await reconcile_all(bus, store, settings.mirrors_dir, commits_topic(settings))


async def run_reconcile(settings: Settings, report: Callable[[Reconciled], None]) -> None:
    """One anti-entropy pass against the configured store and bus (`metre reconcile`)."""
    async with open_store(settings) as store, open_bus(settings) as bus:
        for r in await reconcile_once(settings, bus, store):
            report(r)


async def _drain(drained: Callable[[], bool], timeout: float) -> None:
    """Give the processor time to apply what the poller already published."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not drained():
        await asyncio.sleep(0.05)


def _bus_probe(settings: Settings, bus: Bus) -> Probe:
    """Readiness of `metre up`'s bus: the in-process one is running, or Kafka answers."""
    if settings.kafka_bootstrap:
        return KafkaProbe(settings.kafka_bootstrap, all_topics(settings))

    async def probe() -> bool:
        return not isinstance(bus, InMemoryBus) or bus.running

    return probe


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


async def run_poller(settings: Settings, stop: asyncio.Event) -> None:
    """The poller role, and anti-entropy every `reconcile_interval` (and at start): a broker
    that lost its topics is healed by whichever poller reconciles first (more are harmless).
    Waits for PostgreSQL and the broker when they are not up yet."""
    _require_distributed(settings, "poller")
    quiet_outages(settings)
    async with health_port(settings, "poller") as health, contextlib.AsyncExitStack() as stack:
        with contextlib.suppress(RetryStopped):
            store = await stack.enter_async_context(open_store(settings, stop))
            health.store = store
            bus = await stack.enter_async_context(open_bus(settings, stop))
            await asyncio.gather(
                make_poller(settings, bus, store).run(stop),
                _reconcile_loop(settings, bus, store, stop),
                _removal_loop(settings, bus, store, stop),
                poller_watch(settings, bus, store).run(stop),
            )


async def run_processor(settings: Settings, stop: asyncio.Event) -> None:
    """The processor role; on `stop` it finishes its batch, commits, and leaves the group."""
    _require_distributed(settings, "processor")
    quiet_outages(settings)
    async with health_port(settings, "processor") as health, contextlib.AsyncExitStack() as stack:
        started: list[Processor] = []
        health.probes["consumer"] = consumer_probe(lambda: started[0] if started else None)
        with contextlib.suppress(RetryStopped):
            store = await stack.enter_async_context(open_store(settings, stop))
            health.store = store
            bus = await stack.enter_async_context(open_bus(settings, stop))
            processor = make_processor(settings, bus, store)
            started.append(processor)
            watch = asyncio.create_task(processor_watch(settings, bus, store, processor).run(stop))
            try:
                await processor.run(stop)
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)


async def run_notifier(settings: Settings, stop: asyncio.Event) -> None:
    """The notifier role: one replica evaluates and delivers, the others wait as standbys."""
    _require_distributed(settings, "notifier")
    quiet_outages(settings)
    async with health_port(settings, "notifier") as health, contextlib.AsyncExitStack() as stack:
        with contextlib.suppress(RetryStopped):
            store = await stack.enter_async_context(open_store(settings, stop))
            health.store = store
            bus = await stack.enter_async_context(open_bus(settings, stop))
            notifier = make_notifier(settings, bus, store)
            try:
                await notifier.run(stop)
            finally:
                if notifier.lag is not None:
                    await notifier.lag.close()


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
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
        with contextlib.suppress(RetryStopped):
            async with open_store(settings, stop) as store:
                probes["data_loss"] = data_loss_probe(lambda: store)
                sock = bind_socket(settings.host, settings.port)
                log.info("metre api listening on %s", api_url(sock))
                await serve_api(settings, store, sock, stop, probes, lag=lag)
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
    except _REFUSED as exc:
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


SLOW_SHUTDOWN = 20.0
"""Seconds after a stop request at which a role still running names what it waits for (a
grace period is usually 30 s: the names are logged before the SIGKILL, not lost with it)."""


async def name_slow_shutdown(stop: asyncio.Event, after: float = SLOW_SHUTDOWN) -> None:
    """Once `stop` is set and `after` seconds have passed, log one line per task still
    pending, with the line it is waiting on; a shutdown that hangs then says where."""
    await stop.wait()
    await asyncio.sleep(after)
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    log.error("still stopping after %g s: %d tasks pending", after, len(pending))
    for task in pending:
        stack = task.get_stack()
        where = (
            f"{stack[-1].f_code.co_filename}:{stack[-1].f_lineno} in {stack[-1].f_code.co_name}"
            if stack
            else "unknown"
        )
        log.error("  pending: %s at %s", task.get_name(), where)


def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run with uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:
        asyncio.run(main)
