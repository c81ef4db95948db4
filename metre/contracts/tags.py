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
from typing import Any

import orjson

from metre.contracts.events import EventError, is_sha, repo_id_of
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


def _tag(d: Any) -> ReleaseTag:
    if not isinstance(d, dict):
        raise EventError("each tag must be an object")
    name, sha, time, annotated = d.get("name"), d.get("sha"), d.get("time"), d.get("annotated")
    if not isinstance(name, str) or not name:
        raise EventError("tags[].name must be a non-empty string")
    if not is_sha(sha):
        raise EventError(f"tags[].sha must be a lower-case hex object name, not {sha!r}")
    if not isinstance(annotated, bool):
        raise EventError("tags[].annotated must be a boolean")
    if not isinstance(time, str):
        raise EventError("tags[].time must be a string")
    try:
        when = datetime.fromisoformat(time)
    except ValueError as exc:
        raise EventError(f"tags[].time is not ISO 8601: {time!r}") from exc
    if when.tzinfo is None:
        raise EventError(f"tags[].time has no UTC offset: {time!r}")
    return ReleaseTag(name, sha, when, annotated)


def decode_tags(d: dict[str, Any]) -> TagsEvent:
    """A tags event from its decoded JSON (version and type already checked)."""
    repo_id, tags = repo_id_of(d), d.get("tags")
    if not isinstance(tags, list):
        raise EventError("tags must be a list")
    parsed = tuple(sorted(_tag(t) for t in tags))
    if len({t.name for t in parsed}) != len(parsed):
        raise EventError("tags[].name must be unique")
    return TagsEvent(repo_id, parsed)


def tags_digest(tags: Sequence[ReleaseTag]) -> str | None:
    """A digest of a tag set, None for the empty set (a repository without release tags never
    publishes anything)."""
    if not tags:
        return None
    h = hashlib.sha256()
    for t in sorted(tags):
        h.update(f"{t.name}\0{t.sha}\0{t.time.isoformat()}\0{int(t.annotated)}\n".encode())
    return h.hexdigest()[:32]
