"""Anti-entropy (I/O): compare what each mirror holds at a repository's stored head with what
PostgreSQL holds, and publish again what is missing.

The poller stores a head once the bus acknowledged its events; a bus that loses them
afterwards (the in-process bus of a crashed `metre up`, a Kafka topic deleted or a broker
restarted without storage) would leave PostgreSQL short of commits forever. Reconciliation
closes that gap. Republishing is harmless: processors apply an event at most once. It is cheap
when nothing is missing: a count query and one walk of the commit graph (no diffs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dulwich.repo import Repo

from ingest.bus import Bus, Message
from ingest.events import encode, partition_key
from ingest.gitdiff import commit_event, new_commits
from ingest.mailmap import read_mailmap
from ingest.mirror import RepositoryError, mirror_path

log = logging.getLogger(__name__)


class ReconciledRepo(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def head(self) -> str | None: ...


class FactStore(Protocol):
    async def list_repos(self) -> Sequence[ReconciledRepo]: ...
    async def commit_count(self, repo_id: int) -> int: ...
    async def commit_shas(self, repo_id: int) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Reconciled:
    repo_id: int
    reachable: int
    """Commits reachable from the stored head, in the mirror."""
    stored: int
    """Commits whose facts PostgreSQL holds."""
    republished: int
    error: str | None = None


def _reachable(mirror: Path, head: str) -> list[str]:
    with Repo(str(mirror)) as repo:
        return new_commits(repo, head, None)


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
) -> Reconciled:
    """Publish the events of the commits reachable from `repo.head` that PostgreSQL lacks."""
    mirror = mirror_path(mirrors_dir, repo.id)
    if repo.head is None or not (mirror / "objects").is_dir():
        return Reconciled(repo.id, 0, await store.commit_count(repo.id), 0)
    try:
        reachable = await asyncio.to_thread(_reachable, mirror, repo.head)
    except RepositoryError as exc:
        return Reconciled(repo.id, 0, await store.commit_count(repo.id), 0, str(exc))
    if await store.commit_count(repo.id) == len(reachable):
        # Equal counts: nothing is missing unless something extra is stored, which only a
        # history rewrite produces (and the poller retracts those itself).
        return Reconciled(repo.id, len(reachable), len(reachable), 0)
    stored = await store.commit_shas(repo.id)
    missing = [sha for sha in reachable if sha not in stored]
    key = partition_key(repo.id)
    for i in range(0, len(missing), chunk):
        values = await asyncio.to_thread(
            _events, mirror, repo.id, repo.head, missing[i : i + chunk]
        )
        await bus.publish(topic, [Message(key, v) for v in values])
    if missing:
        log.warning("repository %s: republished %d missing commits", repo.id, len(missing))
    return Reconciled(repo.id, len(reachable), len(stored), len(missing))


async def reconcile_all(
    bus: Bus, store: FactStore, mirrors_dir: Path, topic: str
) -> list[Reconciled]:
    """One pass over every registered repository; one failure does not stop the others."""
    return [
        await reconcile_repo(bus, store, mirrors_dir, topic, repo)
        for repo in await store.list_repos()
    ]
