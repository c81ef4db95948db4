"""A targeted reconcile (I/O): republish what PostgreSQL lacks for exactly the repositories a
data loss touched, in seconds, instead of waiting for the next full pass of `metre reconcile`.

Each repository goes through `reconcile_repo` (under its poll lease, so it never races a
poll). One a poller holds is tried again until `within` runs out: the poll under way publishes
only from its stored head on, not the events that were lost before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from metre.contracts.bus import Bus
from metre.ingest.reconcile import FactStore, reconcile_repo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Healed:
    republished: int
    """Commit events published again (0: nothing was missing)."""
    retracted: int
    pending: tuple[int, ...]
    """Repositories still held by a poller (or failing) when time ran out."""


async def heal(
    bus: Bus,
    store: FactStore,
    mirrors_dir: Path,
    topic: str,
    repo_ids: Iterable[int],
    *,
    within: float = 60.0,
    pause: float = 0.5,
) -> Healed:
    """Reconcile `repo_ids` (those still registered); busy ones again until `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    todo = sorted(set(repo_ids))
    republished = retracted = 0
    while todo:
        left: list[int] = []
        for repo_id in todo:
            repo = await store.get_repo(repo_id)
            if repo is None:  # removed meanwhile
                continue
            r = await reconcile_repo(bus, store, mirrors_dir, topic, repo)
            republished += r.republished
            retracted += r.retracted
            if r.busy or r.error is not None:
                left.append(repo_id)
        todo = left
        if not todo or loop.time() >= deadline:
            break
        await asyncio.sleep(pause)
    if todo:
        log.warning("heal: repositories %s not reconciled yet (busy or failing)", todo)
    return Healed(republished, retracted, tuple(todo))
