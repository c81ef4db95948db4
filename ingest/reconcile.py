"""Anti-entropy (I/O): compare what each mirror holds at a repository's stored head with what
PostgreSQL holds, publish again what is missing, and retract what is stored but no longer
reachable from that head.

The poller stores a head once the bus acknowledged its events; a bus that loses them
afterwards (the in-process bus of a crashed `metre up`, a Kafka topic deleted or a broker
restarted without storage) would leave PostgreSQL short of commits forever. Reconciliation
closes that gap. Republishing is harmless: processors apply an event at most once. It is cheap
when nothing is missing: one aggregate query (count and XOR of the shas) and one walk of the
commit graph (no diffs).

A rewrite whose retraction events were lost leaves the other gap: commits stored that the
stored head no longer reaches. Those are retracted only for an idle repository.

Reconcile works on a repository only while it holds the repository's poll lease (the one
pollers take in `claim_due_repo`), and reads the head under it. Without it, a poll could move
the branch in the middle of a pass: reconcile would republish, after the poll's retractions,
commits the new head no longer reaches (it read the old head), or retract commits the new head
reaches again (tests/ingest/test_reconcile_race.py). A repository whose lease a poller holds is
skipped until the next pass (`Reconciled.busy`): the poll under way publishes what it lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from dulwich.repo import Repo

from metre.contracts.bus import Bus, Message
from metre.contracts.events import RetractEvent, encode, partition_key
from metre.ingest.commits import commit_event
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.graph import new_commits
from metre.ingest.mailmap import read_mailmap
from metre.ingest.mirrordir import mirror_path

log = logging.getLogger(__name__)


class ReconciledRepo(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def head(self) -> str | None: ...
    @property
    def state(self) -> str: ...


class FactStore(Protocol):
    async def list_repos(self) -> Sequence[ReconciledRepo]: ...
    async def get_repo(self, repo_id: int) -> ReconciledRepo | None: ...
    async def commit_count(self, repo_id: int) -> int: ...
    async def commit_digest(self, repo_id: int) -> tuple[int, int]: ...
    async def commit_shas(self, repo_id: int) -> set[str]: ...
    async def take_lease(
        self, repo_id: int, lease_seconds: float
    ) -> tuple[ReconciledRepo, datetime] | None: ...
    async def extend_lease(
        self, repo_id: int, held_until: datetime, lease_seconds: float
    ) -> datetime | None: ...
    async def end_lease(self, repo_id: int, held_until: datetime) -> None: ...


LEASE_SECONDS = 120.0
"""How long reconcile holds a repository's poll lease at a time (renewed after each chunk)."""


class _LeaseLost(Exception):
    """The lease ran out mid-pass (a chunk took longer than the lease) and a poller took it."""


@dataclass(frozen=True, slots=True)
class Reconciled:
    repo_id: int
    reachable: int
    """Commits reachable from the stored head, in the mirror."""
    stored: int
    """Commits whose facts PostgreSQL holds."""
    republished: int
    error: str | None = None
    retracted: int = 0
    """Stored commits the head no longer reaches, for which retractions were published."""
    busy: bool = False
    """A poller held the repository's lease: nothing was published; the next pass retries."""


def _reachable(mirror: Path, head: str) -> list[str]:
    with Repo(str(mirror)) as repo:
        return new_commits(repo, head, None)


def digest(shas: Sequence[str]) -> tuple[int, int]:
    """(count, XOR of the first 64 bits of each sha), as `PgStore.commit_digest` computes it."""
    x = 0
    for sha in shas:
        x ^= int(sha[:16], 16)
    return len(shas), x


def _events(mirror: Path, repo_id: int, head: str, shas: Sequence[str]) -> list[bytes]:
    """Events as the poller builds them: identities through the head's .mailmap."""
    with Repo(str(mirror)) as repo:
        _, mailmap = read_mailmap(repo, head)
        return [encode(commit_event(repo, repo_id, sha, mailmap)) for sha in shas]


async def reconcile_repo(
    bus: Bus,
    store: FactStore,
    mirrors_dir: Path,
    topic: str,
    repo: ReconciledRepo,
    chunk: int = 500,
    lease_seconds: float = LEASE_SECONDS,
) -> Reconciled:
    """Under the repository's poll lease, publish the events of the commits reachable from
    its stored head that PostgreSQL lacks, and retractions of the stored commits that head
    does not reach (an idle repository only). `repo` names the repository; its head is read
    again once the lease is held. A repository a poller holds is reported `busy`."""
    taken = await store.take_lease(repo.id, lease_seconds)
    if taken is None:
        return await _busy(store, mirrors_dir, repo)
    current, held = taken
    lease = [held]

    async def renew() -> None:
        until = await store.extend_lease(repo.id, lease[0], lease_seconds)
        if until is None:
            raise _LeaseLost
        lease[0] = until

    try:
        return await _reconcile_held(bus, store, mirrors_dir, topic, current, chunk, renew)
    except _LeaseLost:
        log.warning("repository %s: reconcile lost its lease mid-pass; next pass", repo.id)
        return Reconciled(repo.id, 0, await store.commit_count(repo.id), 0, busy=True)
    finally:
        await store.end_lease(repo.id, lease[0])


async def _busy(store: FactStore, mirrors_dir: Path, repo: ReconciledRepo) -> Reconciled:
    """The report of a repository being polled: counts only, nothing published."""
    stored = await store.commit_count(repo.id)
    mirror = mirror_path(mirrors_dir, repo.id)
    reachable = 0
    if repo.head is not None and (mirror / "objects").is_dir():
        with contextlib.suppress(RepositoryError):
            reachable = len(await asyncio.to_thread(_reachable, mirror, repo.head))
    return Reconciled(repo.id, reachable, stored, 0, busy=True)


async def _reconcile_held(
    bus: Bus,
    store: FactStore,
    mirrors_dir: Path,
    topic: str,
    repo: ReconciledRepo,
    chunk: int,
    renew: Callable[[], Awaitable[None]],
) -> Reconciled:
    mirror = mirror_path(mirrors_dir, repo.id)
    if repo.head is None or not (mirror / "objects").is_dir():
        return Reconciled(repo.id, 0, await store.commit_count(repo.id), 0)
    try:
        reachable = await asyncio.to_thread(_reachable, mirror, repo.head)
    except RepositoryError as exc:
        return Reconciled(repo.id, 0, await store.commit_count(repo.id), 0, str(exc))
    if await store.commit_digest(repo.id) == digest(reachable):
        return Reconciled(repo.id, len(reachable), len(reachable), 0)
    stored = await store.commit_shas(repo.id)
    missing = [sha for sha in reachable if sha not in stored]
    key = partition_key(repo.id)
    extra = sorted(stored.difference(reachable))
    retracted = 0
    if extra and repo.state == "idle":  # not a crashed poll's commits beyond its stored head
        for i in range(0, len(extra), chunk):
            await renew()
            values = [encode(RetractEvent(repo.id, sha)) for sha in extra[i : i + chunk]]
            await bus.publish(topic, [Message(key, v) for v in values])
        retracted = len(extra)
        log.warning("repository %s: retracted %d unreachable commits", repo.id, retracted)
    for i in range(0, len(missing), chunk):
        values = await asyncio.to_thread(
            _events, mirror, repo.id, repo.head, missing[i : i + chunk]
        )
        await renew()  # the lease is still ours: no poll has moved the head meanwhile
        await bus.publish(topic, [Message(key, v) for v in values])
    if missing:
        log.warning("repository %s: republished %d missing commits", repo.id, len(missing))
    return Reconciled(repo.id, len(reachable), len(stored), len(missing), None, retracted)


async def reconcile_all(
    bus: Bus, store: FactStore, mirrors_dir: Path, topic: str, lease_seconds: float = LEASE_SECONDS
) -> list[Reconciled]:
    """One pass over every registered repository; one failure does not stop the others."""
    return [
        await reconcile_repo(bus, store, mirrors_dir, topic, repo, lease_seconds=lease_seconds)
        for repo in await store.list_repos()
    ]
