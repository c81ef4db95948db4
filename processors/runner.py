"""The processor loop (I/O): fetch a batch, apply it in one transaction, then commit offsets.

Offsets are committed only after the database committed, and applying is idempotent (events
are deduplicated by `repo:sha`), so a crash at any instant repeats work but never loses or
double-counts it. Records that are not valid events, and events the database refuses as data,
go to the dead-letter topic with the error and never block their partition. Transient errors
are retried with the roles' one policy (metre/contracts/retry.py): capped exponential backoff,
jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from metre.contracts.bus import Bus, BusError, CommitFailed, Consumer, Message, Record
from metre.contracts.events import CommitEvent, EventError, RetractEvent, decode_event
from metre.contracts.retry import Backoff, RetryStopped, retry
from metre.contracts.tags import TagsEvent
from metre.contracts.wire import DeadLetterHeaders
from metre.processors import instruments
from metre.processors.deadletters import DeadLetter
from metre.processors.sink import RepoChange, Sink
from metre.processors.updates import combine, update_message

log = logging.getLogger(__name__)
T = TypeVar("T")

_BAD_DATA: tuple[type[BaseException], ...] = (asyncpg.DataError, UnicodeError)
"""What the database refuses in an event itself (say a NUL in a text): poison, not an outage."""


LAG_EVERY = 1.0
"""Seconds between two updates of the consumer-lag gauge (each asks for every position)."""


async def _show_lag(consumer: Consumer) -> None:
    """Publish the consumer's lag per owned partition, when the bus can tell it."""
    lag = getattr(consumer, "lag", None)
    if lag is None:
        return
    with contextlib.suppress(BusError, OSError):
        instruments.set_lag(await lag())


def dlq_message(record: Record, error: str) -> Message:
    """The dead-letter copy of `record`: same key and value, where it came from and why."""
    added: DeadLetterHeaders = {
        "error": error,
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
    }
    return Message(
        key=record.key,
        value=record.value,
        headers=(*record.headers, *((k, str(v).encode()) for k, v in added.items())),
    )


def _dead_row(record: Record, error: str) -> DeadLetter:
    return DeadLetter(record.topic, record.partition, record.offset, error, record.value)


class Processor:
    """Applies commit events from `topic` to the store, as one member of consumer `group`.

    Counters: `applied` (events new to the store), `duplicates` (already applied, repeated in
    a batch, or of an unregistered repository), `poison` (sent to `dlq_topic`; counted once its
    `dead_letters` row is committed), `handled`
    (their sum), `batches`, `retries`, `commit_failures` (offsets not committed after a
    rebalance: harmless), `updates` (metric-update events published on `updates_topic`).
    """

    def __init__(
        self,
        bus: Bus,
        store: Sink,
        topic: str,
        group: str,
        batch_size: int,
        dlq_topic: str,
        *,
        fetch_timeout: float = 0.5,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        updates_topic: str | None = None,
    ) -> None:
        self.bus = bus
        self.updates_topic = updates_topic
        self.store = store
        self.topic = topic
        self.group = group
        self.batch_size = batch_size
        self.dlq_topic = dlq_topic
        self.fetch_timeout = fetch_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.applied = 0
        self.duplicates = 0
        self.poison = 0
        self.batches = 0
        self.retries = 0
        self.commit_failures = 0
        self.updates = 0
        self.rewinds = 0
        self.consumer: Consumer | None = None
        self._rewind = asyncio.Event()

    def rewind(self) -> None:
        """Read the topic again from the earliest offset before the next fetch (after a data
        loss on the bus: records at offsets already passed may be new ones)."""
        self._rewind.set()

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets of this member's partitions (where the bus says)."""
        ask = getattr(self.consumer, "committed", None)
        return {} if ask is None else dict(await ask(self.topic))

    def fetched_high(self) -> dict[int, int]:
        """The highest offset fetched per partition of the topic (records that existed)."""
        highs = getattr(self.consumer, "fetched_high", {})
        return {p: o for (t, p), o in highs.items() if t == self.topic}

    @property
    def handled(self) -> int:
        """Events done with: applied, found to be duplicates, or dead-lettered."""
        return self.applied + self.duplicates + self.poison

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until `stop` is set; non-transient errors propagate."""
        consumer = self.bus.consumer([self.topic], self.group)
        self.consumer = consumer
        try:
            await self._retry(consumer.start, stop)
            shown_lag = 0.0
            while not stop.is_set():
                if self._rewind.is_set() and hasattr(consumer, "rewind"):
                    self._rewind.clear()
                    parts = await self._retry(lambda: consumer.rewind(self.topic), stop)
                    self.rewinds += 1
                    log.info("reading partitions %s of %r again from the start", parts, self.topic)
                records = await self._retry(
                    lambda: consumer.fetch(self.batch_size, self.fetch_timeout), stop
                )
                if records:
                    instruments.EVENTS_CONSUMED.labels(self.topic).inc(len(records))
                    began = time.perf_counter()
                    await self._handle(consumer, records, stop)
                    instruments.BATCH_SECONDS.observe(time.perf_counter() - began)
                    instruments.BATCH_EVENTS.observe(len(records))
                if time.monotonic() - shown_lag >= LAG_EVERY:
                    shown_lag = time.monotonic()
                    await _show_lag(consumer)
        except RetryStopped:  # stopped while waiting to retry: the records come again
            pass
        except BusError:
            if not stop.is_set():
                raise
            # Stopping while the bus shuts down: what was not committed is delivered again.
        finally:
            with contextlib.suppress(BusError, OSError):
                await consumer.stop()

    async def _handle(
        self, consumer: Consumer, records: Sequence[Record], stop: asyncio.Event
    ) -> None:
        """One batch: dead-letter the poison, apply the rest in one transaction, commit."""
        good: list[tuple[Record, CommitEvent | RetractEvent | TagsEvent]] = []
        bad: list[tuple[Record, str]] = []
        for r in records:
            try:
                good.append((r, decode_event(r.value)))
            except EventError as exc:
                bad.append((r, str(exc)))
        if bad:
            await self._dead_letter(bad, stop)
        if good or bad:
            # The dead letters' rows go in with the batch: one transaction, counted once.
            dead = [_dead_row(r, error) for r, error in bad]
            changes, refused = await self._apply(good, dead, stop)
            # Counted only now that their rows are committed: whoever reads the counter and
            # then the dead_letters table must find them there.
            self.poison += len(bad)
            instruments.DEAD_LETTERS.inc(len(bad))
            new = sum(c.commits + c.retracted + c.tags for c in changes)
            self.applied += new
            self.duplicates += len(good) - new - refused
            # Commits added or retracted (docs/observability.md); a tags snapshot is not one.
            instruments.EVENTS_APPLIED.inc(sum(c.commits + c.retracted for c in changes))
            instruments.EVENTS_DUPLICATE.inc(len(good) - new - refused)
            if changes and self.updates_topic is not None:
                await self._publish_updates(changes, stop)
        try:
            await self._retry(lambda: consumer.commit(records), stop)
        except CommitFailed as exc:
            # Another member owns the partition now and will apply the records again: the
            # dedup makes that harmless.
            self.commit_failures += 1
            log.info("offsets not committed: %s", exc)
        self.batches += 1

    async def _apply(
        self,
        good: Sequence[tuple[Record, CommitEvent | RetractEvent | TagsEvent]],
        dead: Sequence[DeadLetter],
        stop: asyncio.Event,
    ) -> tuple[list[RepoChange], int]:
        """(what changed per repository, events dead-lettered because the database refused
        them)."""
        events = [e for _, e in good]
        try:
            whole = functools.partial(self.store.apply_changes, events, dead)
            return await self._retry(whole, stop), 0
        except _BAD_DATA:
            pass  # some event is refused by the database: apply one at a time to find it
        changes: list[RepoChange] = []
        if dead:
            await self._retry(functools.partial(self.store.apply_changes, [], dead), stop)
        refused = 0
        for record, event in good:
            try:
                one = functools.partial(self.store.apply_changes, [event])
                changes.extend(await self._retry(one, stop))
            except _BAD_DATA as exc:
                error = f"refused by the database: {exc}"
                await self._dead_letter([(record, error)], stop)
                row = functools.partial(self.store.apply_changes, [], [_dead_row(record, error)])
                await self._retry(row, stop)
                self.poison += 1
                instruments.DEAD_LETTERS.inc()
                refused += 1
        return combine(changes), refused

    async def _publish_updates(self, changes: Sequence[RepoChange], stop: asyncio.Event) -> None:
        """One metric-update event per repository changed, after the batch's commit and before
        the offsets' (a crash in between loses the notification, never data: docs/events.md)."""
        assert self.updates_topic is not None
        topic, messages = self.updates_topic, [update_message(c) for c in changes]
        await self._retry(lambda: self.bus.publish(topic, messages), stop)
        self.updates += len(messages)

    async def _dead_letter(self, bad: Sequence[tuple[Record, str]], stop: asyncio.Event) -> None:
        for r, error in bad:
            log.warning("poison record %s[%d]@%d: %s", r.topic, r.partition, r.offset, error)
        messages = [dlq_message(r, error) for r, error in bad]
        await self._retry(lambda: self.bus.publish(self.dlq_topic, messages), stop)

    async def _retry(self, op: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
        """Run `op` until it succeeds, waiting between transient failures; others propagate."""

        def count(_: BaseException) -> None:
            self.retries += 1
            instruments.RETRIES.inc()

        return await retry(
            op,
            Backoff(self.backoff_base, self.backoff_cap),
            stop=stop,
            what="PostgreSQL or the bus",
            log=log,
            on_retry=count,
        )
