"""Reconcile racing a poll of the same repository (real PostgreSQL, in-process bus, git oracle).

The interleaving is forced, not hoped for: reconcile's first publish runs a whole poll (and
the processor) before it goes out. Without reconcile holding the poll lease, both cases end
with PostgreSQL holding other commits than git reaches; with it, the poll waits for the next
turn and the result equals git.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from metre.contracts.bus import InMemoryBus, Message
from metre.ingest.reconcile import reconcile_all
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits
from tests.ingest.test_reconcile import TOPIC, new_bus, process_all
from tests.ingest.test_reconcile_rewrite import poll

pytestmark = pytest.mark.integration


class RacingBus:
    """The bus reconcile publishes to; its first publish first runs `race` to completion."""

    def __init__(self, inner: InMemoryBus, race: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.race = race
        self.raced = False

    async def publish(self, topic: str, messages: Sequence[Message]) -> Any:
        if not self.raced:
            self.raced = True
            await self.race()
        return await self.inner.publish(topic, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _commit(b: GitRepoBuilder, name: str) -> str:
    b.write("f", name.encode() + b"\n")
    return b.commit(name, date="2021-01-01T00:00:00+0000")


async def _race_with_a_poll(
    bus: InMemoryBus, store: PgStore, mirrors: Path, repo_id: int
) -> Callable[[], Awaitable[None]]:
    async def race() -> None:
        await store.request_poll(repo_id)
        claimed = await store.claim_due_repo(60)
        if claimed is None:  # reconcile holds the lease: the poll waits for its turn
            return
        await poll_claimed(bus, store, mirrors, claimed)
        await process_all(bus, store)

    return race


async def poll_claimed(bus: InMemoryBus, store: PgStore, mirrors: Path, claimed: Any) -> None:
    from metre.ingest.poller import Poller, PollerConfig

    await Poller(bus, store, PollerConfig(mirrors_dir=mirrors, topic=TOPIC)).poll(claimed)


async def _settle(bus: InMemoryBus, store: PgStore, mirrors: Path, repo_id: int) -> None:
    """What happens next in production: processors apply, the next poll comes."""
    await process_all(bus, store)
    await poll(bus, store, mirrors, repo_id)
    await process_all(bus, store)


async def test_reconcile_does_not_republish_what_a_concurrent_poll_retracted(
    store: PgStore, tmp_path: Path
) -> None:
    """c was polled but its event lost; then a force-push drops c. Reconcile (old head c)
    republishes c while a poll retracts it: c must not end up stored."""
    mirrors = tmp_path / "mirrors"
    live = GitRepoBuilder(tmp_path / "live")
    a, b = _commit(live, "a"), _commit(live, "b")
    bus = await new_bus()
    row = await store.add_repo(str(live.path), None)
    await poll(bus, store, mirrors, row.id)
    await process_all(bus, store)
    _commit(live, "c")
    await poll(await new_bus(), store, mirrors, row.id)  # head c stored, its event lost
    assert await store.commit_shas(row.id) == {a, b}
    live.git("reset", "--hard", b)
    _commit(live, "d")  # the force-push

    racing = RacingBus(bus, await _race_with_a_poll(bus, store, mirrors, row.id))
    [report] = await reconcile_all(racing, store, mirrors, TOPIC)
    assert racing.raced
    assert report.republished == 1
    await _settle(bus, store, mirrors, row.id)
    assert await store.commit_shas(row.id) == set(git_commits(live.path))


async def test_reconcile_does_not_retract_what_a_concurrent_poll_brings_back(
    store: PgStore, tmp_path: Path
) -> None:
    """A force-push to x whose events were lost leaves b and c stored beyond the head; then
    the branch goes back to c. Reconcile (old head x) retracts b and c while a poll brings
    them back: they must end up stored, and x not."""
    mirrors = tmp_path / "mirrors"
    live = GitRepoBuilder(tmp_path / "live")
    a = _commit(live, "a")
    _commit(live, "b")
    c = _commit(live, "c")
    bus = await new_bus()
    row = await store.add_repo(str(live.path), None)
    await poll(bus, store, mirrors, row.id)
    await process_all(bus, store)
    live.git("reset", "--hard", a)
    _commit(live, "x")
    await poll(await new_bus(), store, mirrors, row.id)  # head x stored, its events lost
    live.git("reset", "--hard", c)  # and back again

    racing = RacingBus(bus, await _race_with_a_poll(bus, store, mirrors, row.id))
    [report] = await reconcile_all(racing, store, mirrors, TOPIC)
    assert racing.raced
    assert (report.retracted, report.republished) == (2, 1)
    await _settle(bus, store, mirrors, row.id)
    assert await store.commit_shas(row.id) == set(git_commits(live.path))


async def test_a_repository_whose_lease_a_poller_holds_is_skipped(
    store: PgStore, tmp_path: Path
) -> None:
    mirrors = tmp_path / "mirrors"
    live = GitRepoBuilder(tmp_path / "live")
    _commit(live, "a")
    bus = await new_bus()
    row = await store.add_repo(str(live.path), None)
    await poll(await new_bus(), store, mirrors, row.id)  # head stored, events lost
    await store.request_poll(row.id)
    assert await store.claim_due_repo(60) is not None  # a poller holds it now
    before = bus.end_offsets(TOPIC)
    [report] = await reconcile_all(bus, store, mirrors, TOPIC)
    assert (report.busy, report.republished, report.reachable, report.stored) == (True, 0, 1, 0)
    assert bus.end_offsets(TOPIC) == before
    # reconcile's own lease is given back: a poller can claim the repository afterwards
    await store.release_lease(row.id)
    [done] = await reconcile_all(bus, store, mirrors, TOPIC)
    assert (done.busy, done.republished) == (False, 1)
    await store.request_poll(row.id)
    assert await store.claim_due_repo(60) is not None
