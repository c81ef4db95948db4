"""The watch on the bus (I/O): every role that reads or writes a topic compares what the broker
says of it with the bus marks, at start, every `interval` seconds, and at once when an offset is
acknowledged twice to this process. A loss is logged, counted in `metre_data_loss_total`,
recorded in PostgreSQL (with the repositories whose partitions it hit) and then:

- a poller heals it: a targeted reconcile of those repositories (ingest/heal.py), whoever
  recorded the loss, and marks the event healed; it also runs the freshness check;
- a processor reads the topic's partitions again from the earliest offset (never skipping a
  record it has not applied; the dedup makes the repeats harmless).

Decisions are pure (ingest/dataloss.py); the marks live behind `Marks` (processors/busmarks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from prometheus_client import Counter

from metre.contracts.outage import Outage
from metre.ingest.dataloss import KINDS, Loss, Observed
from metre.ingest.heal import Healed
from metre.ingest.stopping import unless_stopped

log = logging.getLogger(__name__)

DATA_LOSS = Counter(
    "metre_data_loss_total",
    "Data losses found on the bus (and unapplied heads that a heal had to republish), by kind",
    ["kind"],
)
for _kind in (*KINDS, "unapplied_head"):
    DATA_LOSS.labels(_kind)


class LossEventLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def loss(self) -> Loss: ...
    @property
    def repo_ids(self) -> tuple[int, ...]: ...


class Marks(Protocol):
    async def compare_and_mark(
        self, topic: str, now: Observed, role: str
    ) -> Sequence[LossEventLike]: ...
    async def unhealed(self, topic: str) -> Sequence[LossEventLike]: ...
    async def latest_id(self, topic: str) -> int: ...
    async def healed(self, event_id: int, republished: int) -> None: ...
    async def check_freshness(self, lag_seconds: float) -> tuple[list[int], list[int]]: ...
    async def lagging(self) -> dict[int, int]: ...


class Observer(Protocol):
    loss_suspected: asyncio.Event

    async def observe(self, topic: str) -> Observed: ...
    def forget_acks(self, topic: str) -> None: ...


HealFn = Callable[[Sequence[int]], Awaitable[Healed]]


class BusWatch:
    """One role's watch on `topic`. A poller passes `heal` (and `lag_seconds` for the
    freshness check); a processor passes `committed`, `fetched` and `rewind`."""

    def __init__(
        self,
        observer: Observer | None,
        marks: Marks,
        topic: str,
        role: str,
        interval: float,
        *,
        heal: HealFn | None = None,
        lag_seconds: float | None = None,
        committed: Callable[[], Awaitable[Mapping[int, int]]] | None = None,
        fetched: Callable[[], Mapping[int, int]] | None = None,
        rewind: Callable[[], None] | None = None,
        ensure: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.observer = observer
        self.marks = marks
        self.topic = topic
        self.role = role
        self.interval = interval
        self._heal = heal
        self.lag_seconds = lag_seconds
        self._committed = committed
        self._fetched = fetched
        self._rewind = rewind
        self._ensure = ensure
        self._seen: int | None = None
        self._stalled: dict[int, int | None] = {}
        """Lagging repositories: commits stored at the last check (None: reconciled already)."""
        self.checks = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Check until `stop`; an outage of the broker or PostgreSQL postpones a check."""
        outage = Outage(f"the watch on {self.topic!r}", log)
        suspected = asyncio.Event() if self.observer is None else self.observer.loss_suspected
        while not stop.is_set():
            try:
                if not await unless_stopped(self.check_once(), stop):
                    return  # a check cut short marks nothing (one transaction)
                outage.ok()
            except Exception as exc:  # noqa: BLE001 (a dependency away: the next check)
                outage.failed(repr(exc), self.interval)
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(suspected.wait())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(waiters, timeout=self.interval, return_when="FIRST_COMPLETED")
            for w in waiters:
                w.cancel()
            suspected.clear()

    async def check_once(self) -> None:
        if self._seen is None and self._rewind is not None:
            self._seen = await self.marks.latest_id(self.topic)  # earlier losses: not ours
        events: Sequence[LossEventLike] = ()
        now_rewound = False
        if self.observer is not None:  # None: the in-process bus (nothing to compare)
            now = await self.observer.observe(self.topic)
            if self._fetched is not None:
                now = dataclasses.replace(now, fetched=dict(self._fetched()))
            if self._committed is not None and now.bounds is not None:
                now = dataclasses.replace(now, committed=dict(await self._committed()))
            events = await self.marks.compare_and_mark(self.topic, now, self.role)
            now_rewound = bool(now.rewound)
            if now.bounds is None and self._ensure is not None:
                # Create it as ensure_topics does: the test broker makes a topic a produce's
                # metadata request names, and serves no fetch of it until it is created.
                await self._ensure()
        self.checks += 1
        for e in events:
            DATA_LOSS.labels(e.loss.kind).inc()
            log.error(
                "data loss on the bus: %s on %r partitions %s (%s); repositories %s",
                e.loss.kind, self.topic, list(e.loss.partitions), e.loss.detail,
                list(e.repo_ids) or "none",
            )  # fmt: skip
        if self.observer is not None and (events or now_rewound):
            self.observer.forget_acks(self.topic)  # reported once; offsets count from now
        if self._rewind is not None:
            latest = await self.marks.latest_id(self.topic)
            if self._seen is not None and latest > self._seen:
                log.warning(
                    "data loss %d on %r: reading its partitions again from the earliest offset",
                    latest, self.topic,
                )  # fmt: skip
                self._rewind()
            self._seen = latest
        if self._heal is not None:
            await self._heal_recorded()
            if self.lag_seconds is not None:
                await self._freshness()

    async def _heal_recorded(self) -> None:
        assert self._heal is not None
        for e in await self.marks.unhealed(self.topic):
            loop = asyncio.get_running_loop()
            began = loop.time()
            healed = await self._heal(e.repo_ids)
            if healed.pending:
                continue  # the next check tries again
            await self.marks.healed(e.id, healed.republished)
            for repo_id in e.repo_ids:  # reconciled in this lagging episode already
                self._stalled[repo_id] = None
            log.warning(
                "data loss %d healed: %d commits republished for repositories %s in %.1f s",
                e.id, healed.republished, list(e.repo_ids) or "none", loop.time() - began,
            )  # fmt: skip

    async def _freshness(self) -> None:
        """Flag lagging repositories; reconcile one once its stored commits stop growing (a
        long backfill that processors are still applying is slow, not lost: republishing it
        would only double their work)."""
        assert self._heal is not None
        assert self.lag_seconds is not None
        newly, cleared = await self.marks.check_freshness(self.lag_seconds)
        if cleared:
            log.info("repositories %s are applied up to their head again", cleared)
        if newly:
            log.warning(
                "repositories %s lag: their head is not applied %.0f s after it was stored",
                newly, self.lag_seconds,
            )  # fmt: skip
        counts = await self.marks.lagging()
        stalled = []
        for repo_id, n in counts.items():
            before = self._stalled.get(repo_id, -1)
            if before is None:
                continue  # reconciled once in this episode; the processors have it now
            if before == n:
                stalled.append(repo_id)
                self._stalled[repo_id] = None
            else:
                self._stalled[repo_id] = n
        self._stalled = {r: v for r, v in self._stalled.items() if r in counts}
        if not stalled:
            return
        healed = await self._heal(stalled)
        if healed.republished:
            DATA_LOSS.labels("unapplied_head").inc()
            log.error(
                "repositories %s lag with no progress and lacked %d published commits: "
                "republished",
                stalled, healed.republished,
            )  # fmt: skip
