"""Wiring (I/O): the store, the bus and each role's objects built from one Settings object.

Names of topics and groups, connections that wait for their dependency, and one `make_*` per
role part. Nothing here runs a role (metre/runtime.py) or decides when it stops
(metre/supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import asyncpg

from metre import errors
from metre.contracts.bus import Bus, BusError, InMemoryBus
from metre.contracts.retry import DEPENDENCY, is_transient, retry
from metre.health import KafkaProbe
from metre.ingest.buswatch import BusWatch
from metre.ingest.credentials import CredentialsError, load_credentials
from metre.ingest.deadlines import FetchDeadlines
from metre.ingest.heal import Healed, heal
from metre.ingest.mirror import FetchAccess
from metre.ingest.poller import Poller, PollerConfig
from metre.ingest.transport import SshReuse
from metre.processors.busmarks import BusMarks
from metre.processors.lag import GroupLag
from metre.processors.notifier import Notifier, NotifyConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore, SchemaNotCurrent, SchemaTooNew
from metre.readiness import Probe
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


REFUSED = (
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
        except REFUSED as exc:  # waiting does not fix a password
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
        lease_seconds=settings.poll_lease,
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


def bus_probe(settings: Settings, bus: Bus) -> Probe:
    """Readiness of `metre up`'s bus: the in-process one is running, or Kafka answers."""
    if settings.kafka_bootstrap:
        return KafkaProbe(settings.kafka_bootstrap, all_topics(settings))

    async def probe() -> bool:
        return not isinstance(bus, InMemoryBus) or bus.running

    return probe
