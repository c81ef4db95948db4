"""Telling the topics that a repository was removed (I/O: bus, PostgreSQL, the mirrors).

`DELETE /api/v1/repos/{id}` deletes the repository, its facts and its metric rows in one
transaction and leaves the commits it held in an outbox (`Registry.delete_repo`). The roles that
hold the bus and the mirrors (`metre up`, every `metre poller`) drain that outbox: one
retraction per commit on the commits topic (the same event a history rewrite publishes, so an
external consumer undoes the commits exactly as it would after a force-push), then a removal
notice on the metric-updates topic, then the mirror is deleted and the outbox row with it.

At least once: a crash before the outbox row is deleted publishes it all again, which
consumers treat as a no-op (retraction is idempotent by state). metre's own processors find no
facts left to retract. Repository ids are never reused, so a consumer may drop, after the
notice, whatever it still receives for that id (a poll that was under way when the repository
was removed may publish after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import orjson

from metre.contracts.bus import Bus, Message
from metre.contracts.events import RetractEvent, encode, partition_key
from metre.contracts.wire import MetricUpdateWire
from metre.ingest.mirrordir import mirror_path
from metre.processors.metrics import TABLES
from metre.processors.metrics.catalogue import metrics_of_tables
from metre.processors.registry import Registry, Removal
from metre.processors.updates import SCHEMA_VERSION

log = logging.getLogger(__name__)

_MIRROR = re.compile(r"(\d+)\.git")


def removal_notice(r: Removal) -> Message:
    """The metric-update event that says repository `r` is gone: every metric of it changed,
    `removed` is true, and there is no head (docs/events.md)."""
    tables = sorted({*TABLES, "file_changes", "commits", "release_tags"})
    body: MetricUpdateWire = {
        "v": SCHEMA_VERSION,
        "type": "metric-update",
        "repo_id": r.repo_id,
        "head": None,
        "watermark": r.removed_at.isoformat(),
        "generation": r.generation,
        "metrics": metrics_of_tables(set(tables)),
        "tables": tables,
        "commits": 0,
        "retracted": len(r.shas),
        "removed": True,
    }
    return Message(partition_key(r.repo_id), orjson.dumps(body))


async def publish_removal(
    bus: Bus,
    store: Registry,
    r: Removal,
    *,
    mirrors_dir: Path,
    commits_topic: str,
    updates_topic: str,
    chunk: int = 500,
) -> None:
    """Retractions, then the notice, then the mirror and the outbox row go (in that order)."""
    key = partition_key(r.repo_id)
    for i in range(0, len(r.shas), chunk):
        values = [encode(RetractEvent(r.repo_id, sha)) for sha in r.shas[i : i + chunk]]
        await bus.publish(commits_topic, [Message(key, v) for v in values])
    await bus.publish(updates_topic, [removal_notice(r)])
    await asyncio.to_thread(_remove_mirror, mirror_path(mirrors_dir, r.repo_id))
    await store.finish_removal(r.repo_id)
    log.info("repository %s (%s) removed: %d retractions published", r.repo_id, r.url, len(r.shas))


async def publish_removals(
    bus: Bus, store: Registry, *, mirrors_dir: Path, commits_topic: str, updates_topic: str
) -> int:
    """Drain the outbox once, and delete mirrors of repositories no longer registered (another
    poller may have drained their removal); returns the removals published."""
    done = 0
    for r in await store.pending_removals():
        await publish_removal(
            bus,
            store,
            r,
            mirrors_dir=mirrors_dir,
            commits_topic=commits_topic,
            updates_topic=updates_topic,
        )
        done += 1
    await prune_mirrors(store, mirrors_dir)
    return done


async def prune_mirrors(store: Registry, mirrors_dir: Path) -> list[int]:
    """Delete the mirrors of repositories that are not registered; returns their ids.

    The directory is listed before the registry is read: a mirror is only ever created for a
    registered repository, so one listed whose id is then absent belongs to a removed one.
    """
    found = await asyncio.to_thread(_mirror_ids, mirrors_dir)
    if not found:
        return []
    gone = sorted(set(found) - await store.registered_ids())
    for repo_id in gone:
        await asyncio.to_thread(_remove_mirror, mirror_path(mirrors_dir, repo_id))
    return gone


def _mirror_ids(mirrors_dir: Path) -> Sequence[int]:
    try:
        names = [p.name for p in mirrors_dir.iterdir()]
    except OSError:
        return []
    return [int(m.group(1)) for n in names if (m := _MIRROR.fullmatch(n))]


def _remove_mirror(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
