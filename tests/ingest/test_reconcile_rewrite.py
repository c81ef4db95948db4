"""Anti-entropy after a history rewrite whose retraction events were lost: reconcile retracts
what the stored head no longer reaches, publishes what it lacks, leaves an idle, complete
repository alone (nothing published), and never touches a repository being polled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller, PollerConfig
from metre.ingest.reconcile import reconcile_all
from metre.processors.store import PgStore
from testkit.dump import differences, dump
from testkit.postgres import drop_database
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits
from tests.fixtures.postgres import MakeDatabase
from tests.ingest.test_reconcile import TOPIC, new_bus, process_all

pytestmark = pytest.mark.integration


async def poll(bus: InMemoryBus, store: PgStore, mirrors: Path, repo_id: int) -> None:
    await store.request_poll(repo_id)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    assert claimed.id == repo_id
    await Poller(bus, store, PollerConfig(mirrors_dir=mirrors, topic=TOPIC)).poll(claimed)


async def test_lost_retractions_are_retracted_and_equal_a_fresh_ingest(
    store: PgStore, tmp_path: Path, make_database: MakeDatabase
) -> None:
    mirrors = tmp_path / "mirrors"
    live = GitRepoBuilder(tmp_path / "live")
    shas = []
    for i in range(6):
        live.write(f"f{i % 2}", b"line %d\n" % i)
        shas.append(
            live.commit(
                f"c{i}",
                author=(f"A{i % 3}", f"a{i % 3}@x.org"),
                date=f"2021-0{i + 1}-01T12:00:00+0000",
            )
        )
    bus = await new_bus()
    row = await store.add_repo(str(live.path), None)
    await poll(bus, store, mirrors, row.id)
    await process_all(bus, store)
    assert await store.commit_shas(row.id) == set(shas)

    # Force-push: drop c3..c5, add two new commits; the poll's events are all lost.
    live.git("reset", "--hard", shas[2])
    for i in range(2):
        live.write("g", b"new %d\n" % i)
        live.commit(f"n{i}", author=("B", "b@x.org"), date=f"2022-0{i + 1}-01T12:00:00+0000")
    lost = await new_bus()
    await poll(lost, store, mirrors, row.id)
    await lost.stop()
    assert await store.commit_shas(row.id) == set(shas)  # nothing of the rewrite arrived

    [report] = await reconcile_all(bus, store, mirrors, TOPIC)
    assert (report.reachable, report.stored) == (5, 6)
    assert (report.republished, report.retracted) == (2, 3)
    await process_all(bus, store)
    assert await store.commit_shas(row.id) == set(git_commits(live.path))

    # Every fact and metric table equals a fresh ingest of the rewritten history.
    fresh_dsn = await make_database()
    fresh = await PgStore.connect(fresh_dsn)
    try:
        other = await new_bus()
        frow = await fresh.add_repo(str(live.path), None)
        assert frow.id == row.id
        await poll(other, fresh, tmp_path / "fresh-mirrors", frow.id)
        await process_all(other, fresh)
        assert differences(await dump(store._dsn), await dump(fresh_dsn)) == {}
    finally:
        await fresh.close()
        await drop_database(fresh_dsn)

    # Healed: the next pass publishes nothing.
    before = bus.end_offsets(TOPIC)
    [again] = await reconcile_all(bus, store, mirrors, TOPIC)
    assert (again.republished, again.retracted) == (0, 0)
    assert bus.end_offsets(TOPIC) == before


async def test_a_repository_being_polled_is_not_retracted(store: PgStore, tmp_path: Path) -> None:
    """Commits a poll under way already stored are beyond the stored head, not leftovers."""
    mirrors = tmp_path / "mirrors"
    live = GitRepoBuilder(tmp_path / "live")
    live.write("f", b"1\n")
    first = live.commit("c1")
    bus = await new_bus()
    row = await store.add_repo(str(live.path), None)
    await poll(bus, store, mirrors, row.id)
    await process_all(bus, store)
    live.write("f", b"2\n")
    live.commit("c2")
    await poll(bus, store, mirrors, row.id)
    await process_all(bus, store)
    # As if the second poll were still under way: old head stored, state polling.
    await store.pool.execute(
        "UPDATE repos SET head = $2, state = 'polling', lease_until = now() + interval '1 min'"
        " WHERE id = $1",
        row.id,
        first,
    )
    before = bus.end_offsets(TOPIC)
    [report] = await reconcile_all(bus, store, mirrors, TOPIC)
    assert (report.stored, report.reachable, report.retracted) == (2, 1, 0)
    assert bus.end_offsets(TOPIC) == before
    assert len(await store.commit_shas(row.id)) == 2


async def test_nothing_missing_publishes_nothing_on_3000_commits(
    store: PgStore, tmp_path: Path, history_factory: Callable[..., Path]
) -> None:
    big = history_factory(commits=3000, seed=5)
    mirrors = tmp_path / "mirrors"
    bus = await new_bus()
    row = await store.add_repo(str(big), None)
    await poll(bus, store, mirrors, row.id)
    await process_all(bus, store)
    before = bus.end_offsets(TOPIC)
    started = time.perf_counter()
    [report] = await reconcile_all(bus, store, mirrors, TOPIC)
    took = time.perf_counter() - started
    assert (report.reachable, report.stored) == (3000, 3000)
    assert (report.republished, report.retracted) == (0, 0)
    assert bus.end_offsets(TOPIC) == before
    print(f"reconcile pass over 3,000 commits, nothing missing: {took * 1000:.0f} ms")
    await asyncio.sleep(0)
