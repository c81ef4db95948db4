"""The periodic passes (I/O) that roles run as supervised tasks, each until its stop: anti-entropy,
the removals' outbox, trimming the in-process bus, the embedded PostgreSQL's restarter, and the
drain between the poller's stage and the processor's in `metre up`.

Each loop ends at its stop, a pass under way cut short rather than finished (docs/reliability.md
says why that is safe for each); which role runs which is metre/runtime.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from metre.contracts.bus import Bus, InMemoryBus
from metre.contracts.retry import Backoff
from metre.ingest.reconcile import Reconciled, reconcile_all
from metre.ingest.stopping import unless_stopped
from metre.processors.store import PgStore
from metre.settings import Settings
from metre.wiring import all_topics, commits_topic, updates_topic

log = logging.getLogger(__name__)


async def reconcile_loop(settings: Settings, bus: Bus, store: PgStore, stop: asyncio.Event) -> None:
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


async def reconcile_once(settings: Settings, bus: Bus, store: PgStore) -> list[Reconciled]:
    return await reconcile_all(bus, store, settings.mirrors_dir, commits_topic(settings))


async def removal_loop(
    settings: Settings, bus: Bus, store: PgStore, stop: asyncio.Event, every: float = 1.0
) -> None:
    """Publish the retractions of removed repositories and delete their mirrors
    (processors/removals.py); an outage postpones a pass, never the role."""
    from metre.ingest.packs import forget_gone_packs
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
            # A deleted mirror's packs stay mapped in this process (the poller's) until
            # evicted, holding their disk space: unmapped here, right after the deletion.
            forget_gone_packs()
            failing = False
        except Exception as exc:  # noqa: BLE001 (the outbox keeps it for the next pass)
            # One line per outage, not one per second.
            log.log(logging.DEBUG if failing else logging.WARNING,
                    "publishing removals postponed: %r", exc)  # fmt: skip
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def trim_loop(bus: InMemoryBus, stop: asyncio.Event, every: float = 5.0) -> None:
    """The in-process bus keeps records in memory: drop what every reader has committed."""
    while not stop.is_set():
        # Wait first: the processor's group must exist before its topic counts as read.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        bus.trim(unread=True)


async def drain(drained: Callable[[], bool], timeout: float) -> None:
    """Give the processor time to apply what the poller already published."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not drained():
        await asyncio.sleep(0.05)


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
