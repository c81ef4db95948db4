"""The notifier (I/O): evaluates the rules, gathers alerts into digests, delivers them.

Inputs: the metric-update topic (a repository whose tables changed gets its truck factor
re-read), and every `check_interval` seconds the repositories' states, the dead letters and the
processors' lag, read from PostgreSQL and the bus. One notifier evaluates at a time (a
PostgreSQL advisory lock; other replicas wait as standbys), so an alert is raised once however
many run. Digests: a target's waiting alerts leave together, at once for the first and then at
most once per `digest_interval`. Deliveries are retried with doubling waits up to
`retry_cap`, `max_attempts` times, then marked failed; all of it visible over the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from metre.contracts.bus import Bus
from metre.ingest.urlpolicy import UrlPolicy
from metre.processors import filereads
from metre.processors.delivery import DeliveryRefused, post
from metre.processors.lag import GroupLag
from metre.processors.metrics.ownership import ownership
from metre.processors.notify_rules import (
    LEVEL_KINDS,
    PIPELINE,
    Alert,
    Observation,
    Seen,
    evaluate,
    subject_of,
)
from metre.processors.notify_store import NotifyStore
from metre.processors.registry import RepoRow
from metre.processors.store import PgStore

log = logging.getLogger(__name__)
_LEADER_LOCK = 0x6D6E6F74  # "mnot": one notifier evaluates at a time
FAILING_STATES = frozenset({"failed", "abandoned"})


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    policy: UrlPolicy
    check_interval: float = 30.0
    digest_interval: float = 3600.0
    max_attempts: int = 8
    retry_cap: float = 900.0
    first_retry: float = 5.0


def repo_observations(repos: Iterable[RepoRow], now: datetime) -> dict[str, list[Observation]]:
    """The per-repository values of the level kinds (pure)."""
    out: dict[str, list[Observation]] = {"failing": [], "stale": [], "lagging": []}
    for r in repos:
        subject = subject_of(r.id)
        failing = 0.0
        if r.state in FAILING_STATES and r.failing_since is not None:
            failing = (now - r.failing_since).total_seconds() / 60
        out["failing"].append(Observation(subject, failing, r.url, r.id, r.error or ""))
        confirmed = r.last_polled_at or r.created_at
        stale = 0.0 if r.paused_at is not None else (now - confirmed).total_seconds() / 3600
        out["stale"].append(Observation(subject, stale, r.url, r.id))
        lagging = 1.0 if r.lagging_reason else 0.0
        out["lagging"].append(Observation(subject, lagging, r.url, r.id, r.lagging_reason or ""))
    return out


class Notifier:
    def __init__(
        self,
        store: PgStore,
        config: NotifyConfig,
        *,
        bus: Bus | None = None,
        updates_topic: str | None = None,
        group: str = "metre-notifiers",
        lag: GroupLag | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.store = store
        self.notes = NotifyStore(store.pool)
        self.config = config
        self._bus = bus
        self._topic = updates_topic
        self._group = group
        self.lag = lag
        self._client = client
        self.checks = 0
        """Evaluation passes done (tests wait on it)."""

    async def run(self, stop: asyncio.Event) -> None:
        client = self._client or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        try:
            async with self.store.pool.acquire() as lock:
                while not await lock.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK):
                    if await _wait(stop, self.config.check_interval):
                        return
                try:
                    tasks = [
                        asyncio.create_task(self._checks(stop)),
                        asyncio.create_task(self._deliveries(stop, client)),
                    ]
                    if self._bus is not None and self._topic is not None:
                        tasks.append(asyncio.create_task(self._updates(stop)))
                    await asyncio.gather(*tasks)
                finally:
                    with contextlib.suppress(Exception):
                        await lock.execute("SELECT pg_advisory_unlock($1)", _LEADER_LOCK)
        finally:
            if self._client is None:
                await client.aclose()

    # -- evaluation --------------------------------------------------------------------------

    async def check_once(self, now: datetime | None = None) -> list[Alert]:
        """One pass over every rule but the truck factor's changes; the alerts raised."""
        now = now or datetime.now(UTC)
        rules = await self.notes.rules()
        if not rules:
            self.checks += 1
            return []
        repos = await self.store.list_repos()
        by_kind = repo_observations(repos, now)
        pipeline: dict[str, Observation] = {}
        if any(r.kind == "dead_letters" for r in rules):
            count, _ = await self.store.dead_letter_summary(0)
            pipeline["dead_letters"] = Observation(
                PIPELINE, float(count), "pipeline", detail="GET /api/v1/pipeline lists them"
            )
        if self.lag is not None and any(r.kind == "lag" for r in rules):
            lag = await self.lag()
            if lag is not None:
                pipeline["lag"] = Observation(PIPELINE, float(lag), "pipeline")
        seen = await self.notes.seen([r.id for r in rules])
        records: list[tuple[int, str, Seen]] = []
        alerts: list[Alert] = []
        for rule in rules:
            if rule.kind in ("failing", "stale", "lagging"):
                observations = [
                    o
                    for o in by_kind[rule.kind]
                    if o.repo_id is not None and rule.covers(o.repo_id)
                ]
            elif rule.kind in pipeline:
                observations = [pipeline[rule.kind]]
            elif rule.kind == "truck_factor":
                # A baseline for repositories the rule has not seen yet; falls come by updates.
                observations = [
                    await self._truck_factor(r)
                    for r in repos
                    if rule.covers(r.id) and (rule.id, subject_of(r.id)) not in seen and r.commits
                ]
            else:
                observations = []
            for obs in observations:
                record, alert = evaluate(rule, seen.get((rule.id, obs.subject)), obs)
                records.append((rule.id, obs.subject, record))
                if alert is not None:
                    alerts.append(alert)
        await self.notes.record(records, alerts)
        self.checks += 1
        return alerts

    async def repos_changed(self, repo_ids: Iterable[int]) -> list[Alert]:
        """Re-read the truck factor of repositories whose tables changed."""
        rules = [r for r in await self.notes.rules() if r.kind == "truck_factor"]
        wanted = sorted({i for i in repo_ids if any(r.covers(i) for r in rules)})
        if not wanted:
            return []
        seen = await self.notes.seen([r.id for r in rules])
        records: list[tuple[int, str, Seen]] = []
        alerts: list[Alert] = []
        for repo_id in wanted:
            repo = await self.store.get_repo(repo_id)
            if repo is None:
                continue
            obs = await self._truck_factor(repo)
            for rule in rules:
                if rule.covers(repo_id):
                    record, alert = evaluate(rule, seen.get((rule.id, obs.subject)), obs)
                    records.append((rule.id, obs.subject, record))
                    if alert is not None:
                        alerts.append(alert)
        await self.notes.record(records, alerts)
        return alerts

    async def _truck_factor(self, repo: RepoRow) -> Observation:
        rows, counted, _ = await filereads.people_file_authors(self.store, repo.id)
        o = ownership(rows, counted)
        who = ", ".join(e for e, _ in o.removed) or "nobody"
        return Observation(
            subject_of(repo.id), float(o.truck_factor), repo.url, repo.id, f"main authors: {who}"
        )

    # -- delivery ----------------------------------------------------------------------------

    async def deliver_once(self, client: httpx.AsyncClient, now: datetime | None = None) -> int:
        """Make the digests that are due and attempt the deliveries that are due; how many
        were delivered."""
        now = now or datetime.now(UTC)
        await self.notes.make_digests(self.config.digest_interval, now)
        done = 0
        for d in await self.notes.due_deliveries(now):
            try:
                await post(client, d["url"], d["payload"], self.config.policy, delivery_id=d["id"])
            except (DeliveryRefused, httpx.HTTPError) as exc:
                attempt = d["attempts"] + 1
                wait = min(self.config.retry_cap, self.config.first_retry * 2 ** (attempt - 1))
                retry = (
                    now + timedelta(seconds=wait) if attempt < self.config.max_attempts else None
                )
                if isinstance(exc, DeliveryRefused):
                    retry = None  # the address rules will not change by waiting
                reason = str(exc) or type(exc).__name__
                await self.notes.attempt_failed(d["id"], reason, retry)
                log.warning(
                    "notification delivery %d failed (attempt %d): %s%s",
                    d["id"],
                    attempt,
                    reason,
                    "; giving up" if retry is None else "",
                )
            else:
                await self.notes.delivered(d["id"])
                done += 1
        return done

    # -- loops -------------------------------------------------------------------------------

    async def _checks(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_once()
            except Exception as exc:  # noqa: BLE001 (an outage postpones a pass, never the role)
                log.warning("notification rules not evaluated: %s", exc)
            if await _wait(stop, self.config.check_interval):
                return

    async def _deliveries(self, stop: asyncio.Event, client: httpx.AsyncClient) -> None:
        every = min(self.config.check_interval, 5.0)
        while not stop.is_set():
            try:
                await self.deliver_once(client)
            except Exception as exc:  # noqa: BLE001 (the deliveries wait in the table)
                log.warning("notifications not delivered: %s", exc)
            if await _wait(stop, every):
                return

    async def _updates(self, stop: asyncio.Event) -> None:
        assert self._bus is not None
        assert self._topic is not None
        consumer = self._bus.consumer([self._topic], self._group)
        await consumer.start()
        try:
            while not stop.is_set():
                records = await consumer.fetch(500, timeout=1.0)
                if not records:
                    continue
                ids = set()
                for rec in records:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        event = orjson.loads(rec.value)
                        if not event.get("removed"):
                            ids.add(int(event["repo_id"]))
                try:
                    await self.repos_changed(ids)
                except Exception as exc:  # noqa: BLE001 (the next update or check re-reads it)
                    log.warning("truck factor not re-read: %s", exc)
                await consumer.commit(records)
        finally:
            await consumer.stop()


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


__all__ = ["LEVEL_KINDS", "Notifier", "NotifyConfig", "repo_observations"]
