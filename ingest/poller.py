"""The poller (I/O): fetch a mirror, walk the new commits, publish their events, then (and only
then) store the new position.

A crash anywhere before `set_polled` leaves the old position in place, so the next poll
publishes the same commits again; processors drop what they already applied (the event id is
`repo:sha`).

History rewrites: when the new head does not contain the old one (a force-push, or a change of
the tracked branch), the commits reachable from the old head and not from the new one are
retracted first (`RetractEvent`), then the new commits are published, on the repository's
partition in that order. When the `.mailmap` blob at the head differs from the one the
published history was mapped with, every published commit is retracted and the whole history
republished with the new mapping (a stored value that no blob has, `REPUBLISH` in
processors/sink.py, asks for the same: paths stored in an ambiguous earlier form). Both
directions of the walk share `new_commits`'s clock-skew margin (one day), as `git rev-list`
shares its own.

A repository that fails is marked failed with the error and retried with backoff; it never
stops the others. Dulwich and the line counts are blocking: they run in a thread.

One poller polls up to `PollerConfig.concurrency` repositories at once (METRE_POLL_CONCURRENCY),
each fetch in a thread of the poller's own pool and under the fetch deadlines (connect, idle,
total: `metre.ingest.deadlines`), so a remote that never answers or trickles holds one slot for at
most the total deadline and never the others. The lease of a repository whose fetch is under
way is renewed every third of the lease, so a long first clone is not taken over by another
poller; a poll abandoned on shutdown has its sockets shut down and its ssh processes killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from dulwich.repo import Repo

from metre.contracts.bus import Bus, BusError, Message
from metre.contracts.events import RetractEvent, encode, partition_key
from metre.contracts.outage import Outage
from metre.contracts.retry import DEPENDENCY, Backoff, always, retry
from metre.ingest import instruments
from metre.ingest.backfill import EventPool, encode_events, worker_count
from metre.ingest.deadlines import FetchClock
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.graph import new_commits
from metre.ingest.mailmap import read_mailmap
from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.mirrordir import mirror_path
from metre.ingest.releasepoll import ReleaseRegistry, publish_release_tags
from metre.ingest.stopping import sleep_or_stop, unless_stopped
from metre.ingest.urlpolicy import UrlPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
_REGISTRY = Backoff(0.2, 10.0)
"""Waits while the registry (PostgreSQL) does not answer a claim."""


class PolledRepo(Protocol):
    """What the poller needs to know of a registered repository."""

    @property
    def id(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def head(self) -> str | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def mailmap_sha(self) -> str | None: ...
    @property
    def url_policy(self) -> str | None:
        """The URL policy decided at registration (JSON), which the fetch applies."""


class RepoRegistry(Protocol):
    """The repository registry (PostgreSQL in practice: metre.processors.registry.Registry)."""

    async def claim_due_repo(self, lease_seconds: float) -> PolledRepo | None: ...
    async def set_progress(
        self, repo_id: int, done: int, total: int, lease_seconds: float | None = None
    ) -> None: ...
    async def set_polled(
        self,
        repo_id: int,
        head: str | None,
        next_poll_in: float,
        mailmap_sha: str | None = None,
        republished: bool = True,  # the whole history was published anew
    ) -> None: ...
    async def set_failed(
        self, repo_id: int, error: str, retry_in: float, give_up_after: float | None = None
    ) -> str | None: ...
    async def wait_for_poll_request(self, timeout: float) -> None: ...
    async def release_lease(self, repo_id: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PollerConfig:
    mirrors_dir: Path
    topic: str
    poll_interval: float = 60.0
    chunk: int = 500
    """Events published (and acknowledged) at once; progress is reported per chunk."""
    lease_seconds: float = 120.0
    retry_base: float = 5.0
    retry_cap: float = 900.0
    give_up_after: float | None = None
    """Seconds of continuous failure after which a repository is abandoned (None: never)."""
    access: FetchAccess | None = None
    """URL policy, resolver and credentials for fetches (None: `FetchAccess()`'s defaults)."""
    workers: int | None = None
    """Worker processes computing the events of a long backfill (None: one per CPU)."""
    parallel_threshold: int = 2000
    """Polls with fewer new commits stay in-process (no process start-up cost)."""
    concurrency: int = 4
    """Repositories this poller polls at once (METRE_POLL_CONCURRENCY)."""
    release_tags: tuple[str, ...] = ()
    """Globs of the tag names that are releases (ingest/releases.py; empty: no tags events).
    The roles set it from METRE_RELEASE_TAGS."""


def _plan(
    repo: Repo, row: PolledRepo, head: str, mailmap_sha: str | None
) -> tuple[list[str], list[str]]:
    """(commits to retract, commits to publish) to go from what was published to `head`."""
    if row.head is None:
        return [], new_commits(repo, head, None)
    if mailmap_sha != row.mailmap_sha:  # identities change: everything is published anew
        return new_commits(repo, row.head, None), new_commits(repo, head, None)
    return new_commits(repo, row.head, head), new_commits(repo, head, row.head)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Poller:
    def __init__(self, bus: Bus, registry: RepoRegistry, config: PollerConfig) -> None:
        self.bus = bus
        self.registry = registry
        self.config = config
        self.published = 0
        self.polls = 0
        self.failures = 0
        self._bus = Outage("the bus", log)
        """Polls failing because the broker is away: one line for all, not one each."""
        self._fetch_pool: ThreadPoolExecutor | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll due repositories until `stop` is set, up to `concurrency` at once; wakes early
        on a poll request.

        On `stop` the polls under way are abandoned: their leases are released and the
        repositories are due again at once, with their stored heads untouched (what was
        published of them is published again by the next poll; processors drop the repeats).
        A registry that does not answer (PostgreSQL restarting) is retried with capped
        backoff, never fatal.
        """
        unavailable = 0
        active: set[asyncio.Task[None]] = set()
        registry = Outage("the registry (PostgreSQL)", log)
        try:
            while not stop.is_set():
                if len(active) >= max(1, self.config.concurrency):
                    await unless_stopped(
                        asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED), stop
                    )
                    continue
                try:
                    row = await self.registry.claim_due_repo(self.config.lease_seconds)
                    if row is None:
                        await unless_stopped(self.registry.wait_for_poll_request(1.0), stop)
                        unavailable = 0
                        registry.ok()
                        continue
                except Exception as exc:  # noqa: BLE001 (the registry is away: wait, never crash)
                    delay = _REGISTRY.delay(unavailable)
                    unavailable += 1
                    registry.failed(repr(exc), delay)
                    await sleep_or_stop(stop, delay)
                    continue
                unavailable = 0
                registry.ok()
                task = asyncio.create_task(self._poll_until_stopped(row, stop))
                active.add(task)
                task.add_done_callback(active.discard)
        finally:
            if active:
                await asyncio.gather(*active, return_exceptions=True)
            self._close_fetch_pool()

    async def _poll_until_stopped(self, row: PolledRepo, stop: asyncio.Event) -> None:
        try:
            if not await unless_stopped(self.poll(row), stop):
                await self._abandon(row)
        except Exception:
            log.exception("poll of repository %s did not finish", row.id)

    def _fetch_executor(self) -> ThreadPoolExecutor:
        """The threads fetches run in: one per concurrent poll, apart from the default pool,
        so that slow remotes never take the threads everything else of the process uses."""
        if self._fetch_pool is None:
            self._fetch_pool = ThreadPoolExecutor(
                max_workers=max(1, self.config.concurrency), thread_name_prefix="metre-fetch"
            )
        return self._fetch_pool

    def _close_fetch_pool(self) -> None:
        if self._fetch_pool is not None:
            self._fetch_pool.shutdown(wait=False)
            self._fetch_pool = None

    async def _fetch(self, row: PolledRepo) -> Path:
        """The mirror of `row`, fetched under the deadlines while its lease is renewed."""
        access = _registered_access(self.config.access or FetchAccess(), row)
        clock = FetchClock(access.deadlines)
        fetch = functools.partial(
            open_mirror, self.config.mirrors_dir, row.id, row.url, access, clock=clock
        )
        future = asyncio.get_running_loop().run_in_executor(self._fetch_executor(), fetch)
        renew = max(0.5, self.config.lease_seconds / 3)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=renew)
                if done:
                    return future.result()
                try:
                    await self.registry.set_progress(row.id, 0, 0, self.config.lease_seconds)
                except Exception as exc:  # noqa: BLE001 (the lease then runs out: harmless)
                    log.warning("repository %s: lease not renewed (%r)", row.id, exc)
        except asyncio.CancelledError:
            clock.abort()  # the thread's sockets close: it ends now, not at the deadline
            raise

    async def _abandon(self, row: PolledRepo) -> None:
        """Give the repository back (shutdown mid-poll): lease freed, due again at once."""
        try:
            await self.registry.release_lease(row.id)
        except Exception as exc:  # noqa: BLE001 (its lease then runs out by itself)
            log.warning("repository %s: lease not released (%r)", row.id, exc)
        else:
            log.info("repository %s: poll abandoned on shutdown, lease released", row.id)

    async def poll(self, row: PolledRepo) -> None:
        self.polls += 1
        began, published = time.perf_counter(), self.published
        try:
            head, mailmap_sha = await self._publish_new(row)
            await self._publish_releases(row)
        except RepositoryError as exc:
            await self._failed(row, str(exc))
        except BusError as exc:
            await self._failed(row, f"the bus did not acknowledge the events: {exc}", quiet=True)
            self._bus.failed(f"repository {row.id}: {exc}")
        except Exception as exc:  # one broken repository must never stop the others
            log.exception("poll of repository %s failed", row.id)
            await self._failed(row, f"internal error ({type(exc).__name__}); see the poller log")
        else:
            whole = row.head is None or mailmap_sha != row.mailmap_sha  # as `_plan` decides
            if self.published > published:  # the bus took events: it is there
                self._bus.ok()
            await self._persist(
                lambda: self.registry.set_polled(
                    row.id, head, self.config.poll_interval, mailmap_sha, whole
                )
            )
            outcome = "changed" if self.published > published else "unchanged"
            instruments.polled(outcome, time.perf_counter() - began)
            return
        instruments.polled("failed", time.perf_counter() - began)

    async def _publish_releases(self, row: PolledRepo) -> None:
        """The release tags snapshot, after the commits (ingest/releasepoll.py)."""
        if self.config.release_tags and isinstance(self.registry, ReleaseRegistry):
            mirror = mirror_path(self.config.mirrors_dir, row.id)
            if await publish_release_tags(
                self.bus, self.config.topic, self.registry, mirror, row.id,
                self.config.release_tags,
            ):  # fmt: skip
                self.published += 1

    async def _failed(self, row: PolledRepo, error: str, *, quiet: bool = False) -> None:
        self.failures += 1
        delay = Backoff(self.config.retry_base, self.config.retry_cap).delay(row.failures)
        give_up = self.config.give_up_after
        state = await self._persist(lambda: self.registry.set_failed(row.id, error, delay, give_up))
        if state == "abandoned":
            log.warning(
                "repository %s abandoned after failing for %.0f s (resume it to retry): %s",
                row.id, give_up, error,
            )  # fmt: skip
        else:
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "repository %s failed (retry in %.0f s): %s", row.id, delay, error,
            )  # fmt: skip

    async def _persist(self, op: Callable[[], Awaitable[T]]) -> T:
        """Store a poll's outcome, retrying while the registry is away, for up to half the
        lease (after that the lease runs out and another poll repeats the work: harmless)."""
        deadline = asyncio.get_running_loop().time() + self.config.lease_seconds / 2
        return await retry(
            op, DEPENDENCY, retriable=always, deadline=deadline, what="registry", log=log
        )

    async def _publish_new(self, row: PolledRepo) -> tuple[str, str | None]:
        """Publish retractions, then new commits; returns (head, .mailmap blob) to store."""
        mirror = await self._fetch(row)
        head = await asyncio.to_thread(resolve_head, mirror, row.branch)
        started = datetime.now().astimezone()
        with Repo(str(mirror)) as repo:
            mailmap_sha, mailmap = await asyncio.to_thread(read_mailmap, repo, head)
            if head == row.head and mailmap_sha == row.mailmap_sha:
                return head, mailmap_sha
            gone, shas = await asyncio.to_thread(_plan, repo, row, head, mailmap_sha)
            total = len(gone) + len(shas)
            lease = self.config.lease_seconds
            await self.registry.set_progress(row.id, 0, total, lease)
            done = 0
            key = partition_key(row.id)
            for chunk in _chunks(gone, self.config.chunk):
                values = [encode(RetractEvent(row.id, sha)) for sha in chunk]
                await self.bus.publish(self.config.topic, [Message(key, v) for v in values])
                done += len(values)
                self.published += len(values)
                instruments.EVENTS_PUBLISHED.inc(len(values))
                await self.registry.set_progress(row.id, done, total, lease)
            workers = worker_count(self.config.workers)
            if workers > 1 and len(shas) >= self.config.parallel_threshold:
                # Slices complete in any order (deltas commute); the head is stored by the
                # caller only after every slice was published and acknowledged.
                pool = EventPool(workers)
                try:
                    slices = _chunks(shas, self.config.chunk)
                    async for _, values in pool.events(str(mirror), row.id, slices, mailmap):
                        await self.bus.publish(self.config.topic, [Message(key, v) for v in values])
                        done += len(values)
                        self.published += len(values)
                        instruments.EVENTS_PUBLISHED.inc(len(values))
                        await self.registry.set_progress(row.id, done, total, lease)
                finally:
                    await asyncio.to_thread(pool.close)
            else:
                for chunk in _chunks(shas, self.config.chunk):
                    values = await asyncio.to_thread(encode_events, repo, row.id, chunk, mailmap)
                    await self.bus.publish(self.config.topic, [Message(key, v) for v in values])
                    done += len(values)
                    self.published += len(values)
                    instruments.EVENTS_PUBLISHED.inc(len(values))
                    await self.registry.set_progress(row.id, done, total, lease)
        log.info(
            "repository %s: retracted %d and published %d commits up to %s in %.1f s",
            row.id,
            len(gone),
            len(shas),
            head[:12],
            (datetime.now().astimezone() - started).total_seconds(),
        )
        return head, mailmap_sha


def _registered_access(access: FetchAccess, row: PolledRepo) -> FetchAccess:
    """`access` with the URL policy decided when `row` was registered, so that every poller
    fetches what the registering role admitted, whatever its own URL settings (rows from
    before migration 0015 have none: this poller's policy applies)."""
    stored = row.url_policy
    if stored is None:
        return access
    try:
        policy = UrlPolicy.from_json(stored)
    except ValueError:
        raise RepositoryError(
            "the URL policy stored with the repository cannot be read; register it again"
        ) from None
    return dataclasses.replace(access, policy=policy)
