"""Reading a mirror's release tags: each tag whose name is a release's, peeled to its commit,
with its release time (I/O: reads the mirror through dulwich; blocking).

A poll reads them every time, so the tags come from `metre.ingest.refstore.read_refs` (cached
while the refs are unchanged) and what a tag object peels to is kept by its sha (`PEELED_KEPT`
of them, least recently used dropped first): an object never changes, so a tag that did not
move is not read again, and one added or moved is (its sha is new).

Apart from `metre.ingest.releases` (the patterns): the settings and the API
import that, and must not load dulwich.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from dulwich.objects import Commit, ObjectID, Tag
from dulwich.repo import Repo

from metre.contracts.tags import ReleaseTag
from metre.ingest.refstore import read_refs
from metre.ingest.releases import is_release

__all__ = ["PEELED_KEPT", "read_release_tags"]

PEELED_KEPT = 65_536
"""Tag objects whose peeled commit and release time are kept, over all repositories."""
_TAGS = b"refs/tags/"

log = logging.getLogger(__name__)

_MAX_DEPTH = 16
"""Tags of tags followed at most this deep (git itself gives up on deeper chains)."""


def _when(seconds: int, offset: int) -> datetime:
    """A git timestamp and offset (seconds east of UTC) as an aware datetime, clamped to what
    a datetime holds (release times outside years 1..9999 are nonsense anyway)."""
    try:
        tz = timezone(timedelta(seconds=offset))
    except ValueError:
        tz = UTC
    try:
        return datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        if seconds > 0:
            return datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
        return datetime(1970, 1, 1, tzinfo=UTC)


def _peel(repo: Repo, sha: ObjectID) -> ReleaseTag | None:
    """The commit a tag ref names and its release time; None for a tree, a blob, a missing
    object, or an object dulwich cannot parse (a hostile tag must not fail the poll)."""
    store = repo.object_store
    outer: Tag | None = None
    try:
        obj = store[sha]
        for _ in range(_MAX_DEPTH):
            if not isinstance(obj, Tag):
                break
            if outer is None:
                outer = obj
            obj = store[obj.object[1]]
        if not isinstance(obj, Commit):
            return None
        if outer is not None and outer.tagger is not None and outer.tag_time is not None:
            time = _when(outer.tag_time, outer.tag_timezone or 0)
        else:
            time = _when(obj.commit_time, obj.commit_timezone)
        return ReleaseTag("", obj.id.decode(), time, outer is not None)
    except Exception as exc:  # noqa: BLE001 (any parse error: this tag is not a release)
        log.info("tag object %s is not readable, not a release: %r", sha.decode(), exc)
        return None


class _Peeled:
    """What tag objects peel to, by sha (objects never change), least recently used dropped."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._by_sha: OrderedDict[bytes, ReleaseTag] = OrderedDict()
        self._lock = threading.Lock()

    def peel(self, repo: Repo, sha: bytes) -> ReleaseTag | None:
        with self._lock:
            found = self._by_sha.get(sha)
            if found is not None:
                self._by_sha.move_to_end(sha)
                return found
        peeled = _peel(repo, ObjectID(sha))
        if peeled is not None:  # an unreadable tag is tried again next time
            with self._lock:
                self._by_sha[sha] = peeled
                while len(self._by_sha) > self._kept:
                    self._by_sha.popitem(last=False)
        return peeled


_PEELED = _Peeled(PEELED_KEPT)


def read_release_tags(repo: Repo, patterns: Sequence[str]) -> tuple[ReleaseTag, ...]:
    """Every tag of `repo` whose name matches `patterns`, peeled, sorted by name. Blocking."""
    if not patterns:
        return ()
    refs, _ = read_refs(Path(repo.controldir()), Path(repo.commondir()))
    out = []
    for ref, sha in refs.items():
        if not ref.startswith(_TAGS):
            continue
        name = ref[len(_TAGS) :].decode("utf-8", errors="backslashreplace")
        if not is_release(name, patterns):
            continue
        peeled = _PEELED.peel(repo, sha)
        if peeled is not None:
            out.append(ReleaseTag(name, peeled.sha, peeled.time, peeled.annotated))
    return tuple(sorted(out))
