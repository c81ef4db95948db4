"""Parallel backfill (metre.ingest.backfill) equals the in-process path, event for event, and the
poller's parallel path publishes every commit once and stores the head after them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dulwich.repo import Repo

from metre.contracts.bus import InMemoryBus
from metre.contracts.events import decode
from metre.ingest.backfill import EventPool, encode_events, worker_count
from metre.ingest.git.graph import new_commits
from metre.ingest.mirror import resolve_head
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import git_commits, git_numstat, served_path


def _serial(path: Path) -> tuple[list[str], list[bytes]]:
    with Repo(str(path)) as repo:
        shas = new_commits(repo, resolve_head(path / ".git", None), None)
        return shas, encode_events(repo, 3, shas)


async def test_parallel_slices_equal_serial_events(random_repo: Path) -> None:
    shas, serial = _serial(random_repo)
    slices = [shas[i : i + 37] for i in range(0, len(shas), 37)]
    seen: list[int] = []
    parallel: list[bytes] = []
    with EventPool(2) as pool:
        async for i, values in pool.events(str(random_repo), 3, slices, in_flight=3):
            seen.append(i)
            parallel += values
    assert sorted(seen) == list(range(len(slices)))
    assert sorted(parallel) == sorted(serial)
    assert len(serial) == len(git_commits(random_repo))


async def test_a_worker_error_reaches_the_caller(tmp_path: Path) -> None:
    with EventPool(1) as pool, pytest.raises(Exception, match=r"missing|not a git|No git"):
        async for _ in pool.events(str(tmp_path), 1, [["0" * 40]]):
            pass


def test_worker_count() -> None:
    assert worker_count(3) == 3
    assert worker_count(None) >= 1


@pytest.mark.integration
async def test_poller_parallel_path_publishes_each_commit_once(
    store: PgStore, tmp_path: Path, random_repo: Path
) -> None:
    bus = InMemoryBus(partitions=4)
    await bus.start()
    await bus.ensure_topics(["t"])
    config = PollerConfig(
        mirrors_dir=tmp_path / "m", topic="t", chunk=11, workers=2, parallel_threshold=50
    )
    poller = Poller(bus, store, config)
    row = await store.add_repo(str(random_repo), None)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    await poller.poll(claimed)
    consumer = bus.consumer(["t"], "reader")
    await consumer.start()
    events = []
    while batch := await consumer.fetch(10_000, 0.05):
        events += [decode(r.value) for r in batch]
    await consumer.stop()
    commits = git_commits(random_repo)
    assert sorted(e.event_id for e in events) == sorted(f"{row.id}:{sha}" for sha in commits)
    numstat = git_numstat(random_repo)
    for e in events:
        mine = sorted(
            (f.path, None if f.binary else f.added, None if f.binary else f.removed)
            for f in e.files
        )
        git = sorted((served_path(p), a, r) for p, a, r in numstat[e.sha])
        assert mine == git, e.sha
    polled = await store.get_repo(row.id)
    assert polled is not None
    assert (polled.state, polled.head) == ("idle", next(iter(commits)))
    await bus.stop()
