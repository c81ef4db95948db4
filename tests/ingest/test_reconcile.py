"""Anti-entropy: a bus that lost what the poller published is healed by reconciliation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller, PollerConfig
from metre.ingest.reconcile import reconcile_all
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits

pytestmark = pytest.mark.integration

TOPIC = "metre.commits"


async def new_bus() -> InMemoryBus:
    bus = InMemoryBus(partitions=4)
    await bus.start()
    await bus.ensure_topics([TOPIC, f"{TOPIC}.dlq"])
    return bus


async def process_all(bus: InMemoryBus, store: PgStore) -> None:
    p = Processor(bus, store, TOPIC, "g", 100, f"{TOPIC}.dlq", fetch_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    async with asyncio.timeout(30):
        while bus.committed("g", TOPIC) != {k: v for k, v in bus.end_offsets(TOPIC).items() if v}:
            await asyncio.sleep(0.02)
    stop.set()
    await task


async def test_a_lost_bus_is_healed(store: PgStore, tmp_path: Path, awkward_repo: Path) -> None:
    mirrors = tmp_path / "mirrors"
    lost = await new_bus()
    poller = Poller(lost, store, PollerConfig(mirrors_dir=mirrors, topic=TOPIC))
    row = await store.add_repo(str(awkward_repo), None)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    await poller.poll(claimed)
    await lost.stop()  # everything published is gone with it: the head is stored regardless
    polled = await store.get_repo(row.id)
    assert polled is not None
    assert polled.head is not None
    assert await store.commit_count(row.id) == 0

    fresh = await new_bus()
    [report] = await reconcile_all(fresh, store, mirrors, TOPIC)
    n = len(git_commits(awkward_repo))
    assert (report.reachable, report.stored, report.republished) == (n, 0, n)
    await process_all(fresh, store)
    assert await store.commit_shas(row.id) == set(git_commits(awkward_repo))

    # Nothing missing: nothing republished.
    [again] = await reconcile_all(fresh, store, mirrors, TOPIC)
    assert (again.reachable, again.stored, again.republished) == (n, n, 0)


async def test_partial_loss_republishes_only_the_missing(store: PgStore, tmp_path: Path) -> None:
    mirrors = tmp_path / "mirrors"
    live = GitRepoBuilder(tmp_path / "live")
    for i in range(3):
        live.write("f", b"%d\n" % i)
        live.commit(f"c{i}")
    bus = await new_bus()
    row = await store.add_repo(str(live.path), None)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    await Poller(bus, store, PollerConfig(mirrors_dir=mirrors, topic=TOPIC)).poll(claimed)
    await process_all(bus, store)
    for i in range(3, 7):
        live.write("f", b"%d\n" % i)
        live.commit(f"c{i}")
    lost = await new_bus()
    await store.request_poll(row.id)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    await Poller(lost, store, PollerConfig(mirrors_dir=mirrors, topic=TOPIC)).poll(claimed)
    await lost.stop()
    assert await store.commit_count(row.id) == 3

    [report] = await reconcile_all(bus, store, mirrors, TOPIC)
    assert (report.reachable, report.stored, report.republished) == (7, 3, 4)
    await process_all(bus, store)
    assert await store.commit_shas(row.id) == set(git_commits(live.path))
    activity = await store.activity(row.id, None, None, "day")
    assert sum(d["commits"] for d in activity) == 7


async def test_unpolled_repositories_are_left_to_the_poller(
    store: PgStore, tmp_path: Path, awkward_repo: Path
) -> None:
    await store.add_repo(str(awkward_repo), None)
    [report] = await reconcile_all(await new_bus(), store, tmp_path / "m", TOPIC)
    assert (report.reachable, report.republished, report.error) == (0, 0, None)
