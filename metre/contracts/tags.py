"""The tags event: a repository's release tags as one snapshot (docs/events.md, "Tags event").

The event is a snapshot, not a delta: a processor replaces the repository's tags with it, so a
tag that moved or vanished is retracted by the next snapshot, redelivery is a no-op, and of
several snapshots of one repository (one partition, one order) the last one wins. Which tags are
releases, and how their time is read from git, is the poller's business (metre.ingest.releases).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from metre.contracts.wire import TagsEventWire


@dataclass(frozen=True, slots=True, order=True)
class ReleaseTag:
    """One release tag: its name (UTF-8; other bytes backslash-escaped), the commit it names,
    its release time (with the tagger's or committer's UTC offset), and whether it is
    annotated."""

    name: str
    sha: str
    time: datetime
    annotated: bool


@dataclass(frozen=True, slots=True)
class TagsEvent:
    """The complete set of release tags of repository `repo_id` (empty: none)."""

    repo_id: int
    tags: tuple[ReleaseTag, ...]

    @property
    def digest(self) -> str | None:
        return tags_digest(self.tags)

    @property
    def event_id(self) -> str:
        return f"{self.repo_id}:tags:{self.digest or 'none'}"


def tags_wire(e: TagsEvent) -> TagsEventWire:
    return {
        "v": 1,
        "type": "tags",
        "id": e.event_id,
        "repo_id": e.repo_id,
        "tags": [
            {"name": t.name, "sha": t.sha, "time": t.time.isoformat(), "annotated": t.annotated}
            for t in e.tags
        ],
    }


def encode_tags(e: TagsEvent) -> bytes:
    return orjson.dumps(tags_wire(e))


def decode_tags(d: TagsEventWire) -> TagsEvent:
    """The tags event of a validated record (`decode_event` checked it against
    `TagsEventWire`: names unique, shas and times well formed)."""
    tags = (
        ReleaseTag(t["name"], t["sha"], datetime.fromisoformat(t["time"]), t["annotated"])
        for t in d["tags"]
    )
    return TagsEvent(d["repo_id"], tuple(sorted(tags)))


def tags_digest(tags: Sequence[ReleaseTag]) -> str | None:
    """A digest of a tag set, None for the empty set (a repository without release tags never
    publishes anything)."""
    if not tags:
        return None
    h = hashlib.sha256()
    for t in sorted(tags):
        h.update(f"{t.name}\0{t.sha}\0{t.time.isoformat()}\0{int(t.annotated)}\n".encode())
    return h.hexdigest()[:32]
