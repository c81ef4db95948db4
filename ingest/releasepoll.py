"""Publishing a repository's release tags after a poll (I/O: the mirror, the bus, the
registry).

The tags snapshot (ingest/releases.py) is published when the mirror's set differs from the one
last published (a tag was added, moved or deleted, or the patterns changed) or from the one
last applied (the bus lost a snapshot: the in-process bus of a killed `metre up`, a lost
topic). The second also republishes while processors lag behind the snapshot: harmless, a
snapshot is applied only when it differs. The published digest is stored only after the bus
acknowledged the snapshot, as the head is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from dulwich.repo import Repo

from metre.contracts.bus import Bus, Message
from metre.contracts.events import partition_key
from metre.contracts.tags import ReleaseTag, TagsEvent, encode_tags
from metre.ingest.releasetags import read_release_tags

log = logging.getLogger(__name__)

MAX_SNAPSHOT_BYTES = 1_000_000
"""Kafka's default largest message is 1 MiB (record overhead included): a larger snapshot
would fail every poll of its repository, so it is not published (some 9,000 tags)."""


@runtime_checkable
class ReleaseRegistry(Protocol):
    """Where the digests of published and applied snapshots are kept (metre.processors.store)."""

    async def release_digests(self, repo_id: int) -> tuple[str | None, str | None]: ...
    async def set_release_published(self, repo_id: int, digest: str | None) -> None: ...


def _read(mirror: Path, patterns: Sequence[str]) -> tuple[ReleaseTag, ...]:
    with Repo(str(mirror)) as repo:
        return read_release_tags(repo, patterns)


async def publish_release_tags(
    bus: Bus,
    topic: str,
    registry: ReleaseRegistry,
    mirror: Path,
    repo_id: int,
    patterns: Sequence[str],
) -> bool:
    """Publish the repository's tags snapshot if it is needed; True if one was published."""
    tags = await asyncio.to_thread(_read, mirror, patterns)
    event = TagsEvent(repo_id, tags)
    published, applied = await registry.release_digests(repo_id)
    if event.digest == published and event.digest == applied:
        return False
    value = encode_tags(event)
    if len(value) > MAX_SNAPSHOT_BYTES:
        log.warning(
            "repository %s: %d release tags make a %d-byte snapshot, over %d: not published "
            "(narrow METRE_RELEASE_TAGS)", repo_id, len(tags), len(value), MAX_SNAPSHOT_BYTES,
        )  # fmt: skip
        return False
    await bus.publish(topic, [Message(partition_key(repo_id), value)])
    await registry.set_release_published(repo_id, event.digest)
    return True
