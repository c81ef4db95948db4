"""The wire contract between pollers and processors (pure: no I/O).

A `CommitEvent` says everything metre needs to know about one commit of one repository; a
`RetractEvent` says that a commit left the tracked history (a force-push, a change of branch or
of .mailmap) and its effect must be undone. Events are JSON (orjson), carry a schema version `v`
and a `type`, and are identified by `repo_id:sha` (`repo_id:sha:retract`), never by a broker
offset, so redelivery and republishing are harmless. See docs/events.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard

import orjson

from metre.contracts.paths import PATH_FORM, is_path_text
from metre.contracts.wire import (
    VERSION,
    BlobWire,
    CommitEventWire,
    FileWire,
    MergeFileWire,
    PersonWire,
    RetractEventWire,
)

if TYPE_CHECKING:
    from metre.contracts.tags import TagsEvent

SCHEMA_VERSION: Final = VERSION

ChangeType = Literal["A", "D", "M", "T"]
"""Added, deleted, modified, type changed (file <-> symlink <-> submodule)."""

_CHANGE_TYPES = frozenset(("A", "D", "M", "T"))


class EventError(ValueError):
    """A record that is not a valid event of a version this metre understands (a poison event)."""


@dataclass(frozen=True, slots=True)
class Person:
    """An author or committer as recorded in the commit; `time` keeps the person's UTC offset.

    `time_raw` is None when `time` is exactly what ``git log`` shows. When git's value does not
    fit a `datetime` (no date, year after 9999, an offset of 24 hours or more; see
    metre.ingest.gitdate and docs/events.md) `time` is a bounded stand-in and `time_raw` the
    recorded date text, so that consumers can tell, and recover git's value.
    """

    name: str
    email: str
    time: datetime
    time_raw: str | None = None


@dataclass(frozen=True, slots=True)
class BlobDelta:
    """A commit's own contribution to measures of the blob at one path (signed), so that
    summed over a commit and all its ancestors they give that commit's blob: `bytes` (the blob's
    size; 0 for a submodule entry or an absent path), `binary` (1 when the blob is binary by
    git's rule, a NUL in the first 8000 bytes) and `text_bytes` (the size of a blob that is not
    binary, else 0). A non-merge commit carries new minus old; a merge its inclusion-exclusion
    part, as for `MergeFile.lines` (docs/events.md)."""

    bytes: int
    binary: int
    text_bytes: int
    code: int | None = None
    """Lines of code (lines holding something other than whitespace and comments; 0 for a
    binary blob, a symlink or a submodule: metre.ingest.codelines); None: unknown (events written
    before the field)."""


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file of a commit, as `git log --numstat --no-renames --minimal` counts it.

    Binary files have `binary=True` and zero counts. Paths are in metre's path form
    (`metre.contracts.paths`: UTF-8, a backslash doubled, bytes that are not UTF-8 as ``\\xe9``).
    """

    path: str
    added: int
    removed: int
    binary: bool = False
    change: ChangeType = "M"
    blob: BlobDelta | None = None
    """The change of the blob's measures (new minus old); None: unknown (events of earlier
    revisions)."""


@dataclass(frozen=True, slots=True)
class MergeFile:
    """What a merge commit itself contributes to one path's state at the head (signed).

    For merge M with parents P1..Pk: `lines` and `presence` are the per-path values of M minus
    what the union of its parents' histories already sums to (inclusion-exclusion over the
    parents and their merge bases; see docs/events.md). `lines` counts git's lines of the
    content (0 for binary), `presence` is 1 where the path exists. Summed with the non-merge
    commits' numstat (added - removed; +1 per add, -1 per delete) over any commit and all its
    ancestors, they give that commit's tree.
    """

    path: str
    lines: int
    presence: int
    blob: BlobDelta | None = None
    """The merge's own part of the blob's measures; None: unknown (earlier revisions)."""


@dataclass(frozen=True, slots=True)
class CommitEvent:
    """One commit reachable from the tracked branch. Merge commits carry no file changes
    (`files`, as `git log --numstat`), only their own contribution to the tree (`merge_files`)."""

    repo_id: int
    sha: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    summary: str
    files: tuple[FileChange, ...] = field(default=())
    merge_files: tuple[MergeFile, ...] = field(default=())
    path_form: int = PATH_FORM
    """How the paths are written (`metre.contracts.paths`); 1 in events of earlier versions, where a
    path with a backslash may stand for two git paths."""

    @property
    def ambiguous_paths(self) -> bool:
        """Whether a path may mean another git path than in the current form (a form-1 event
        with a backslash in a path): its repository's history must be published again."""
        if self.path_form == PATH_FORM:
            return False
        return any("\\" in f.path for f in self.files) or any(
            "\\" in m.path for m in self.merge_files
        )

    @property
    def lacks_blobs(self) -> bool:
        """Whether a file or merge file carries no blob measures (an event of an earlier
        revision): the repository's history must be published again for them."""
        return any(f.blob is None for f in self.files) or any(
            m.blob is None for m in self.merge_files
        )

    @property
    def lacks_code(self) -> bool:
        """Whether a file or merge file carries no lines of code (an event written before
        `blob.code`): the repository's history must be published again for them."""
        return any(f.blob is None or f.blob.code is None for f in self.files) or any(
            m.blob is None or m.blob.code is None for m in self.merge_files
        )

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1

    @property
    def event_id(self) -> str:
        return event_id(self.repo_id, self.sha)

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)


@dataclass(frozen=True, slots=True)
class RetractEvent:
    """Commit `sha` is no longer reachable from the tracked branch: undo its effect.

    Idempotent by state, like a commit event: it acts only while the commit's facts are
    present, so a commit can be added, retracted and added again (in that order, on the
    repository's partition).
    """

    repo_id: int
    sha: str

    @property
    def event_id(self) -> str:
        return f"{event_id(self.repo_id, self.sha)}:retract"


Event = CommitEvent | RetractEvent
"""Every event type of schema version 1."""


def event_id(repo_id: int, sha: str) -> str:
    return f"{repo_id}:{sha}"


def partition_key(repo_id: int) -> bytes:
    """Events of one repository share a key, hence a partition, hence an order."""
    return str(repo_id).encode()


def _person_json(p: Person) -> PersonWire:
    d: PersonWire = {"name": p.name, "email": p.email, "time": p.time.isoformat()}
    if p.time_raw is not None:  # only on flagged dates: the common event stays as it was
        d["time_raw"] = p.time_raw
    return d


def wire(e: CommitEvent | RetractEvent) -> CommitEventWire | RetractEventWire:
    """The JSON object of `e`, shaped as metre/contracts/wire.py declares (docs/schemas/ hold)."""
    if isinstance(e, RetractEvent):
        retract: RetractEventWire = {
            "v": SCHEMA_VERSION,
            "type": "retract",
            "id": e.event_id,
            "repo_id": e.repo_id,
            "sha": e.sha,
        }
        return retract
    commit: CommitEventWire = {
        "v": SCHEMA_VERSION,
        "type": "commit",
        "id": e.event_id,
        "repo_id": e.repo_id,
        "sha": e.sha,
        "parents": list(e.parents),
        "is_merge": e.is_merge,
        "author": _person_json(e.author),
        "committer": _person_json(e.committer),
        "summary": e.summary,
        "path_form": 2 if e.path_form == 2 else 1,
        "files": [_file_json(f) for f in e.files],
    }
    if e.merge_files:  # absent when empty: the common event stays as it was
        commit["merge_files"] = [_merge_file_json(m) for m in e.merge_files]
    return commit


def _blob_json(b: BlobDelta) -> BlobWire:
    d: BlobWire = {"bytes": b.bytes, "binary": b.binary, "text_bytes": b.text_bytes}
    if b.code is not None:
        d["code"] = b.code
    return d


def _file_json(f: FileChange) -> FileWire:
    d: FileWire = {
        "path": f.path,
        "added": f.added,
        "removed": f.removed,
        "binary": f.binary,
        "change": f.change,
    }
    if f.blob is not None:
        d["blob"] = _blob_json(f.blob)
    return d


def _merge_file_json(m: MergeFile) -> MergeFileWire:
    d: MergeFileWire = {"path": m.path, "lines": m.lines, "presence": m.presence}
    if m.blob is not None:
        d["blob"] = _blob_json(m.blob)
    return d


def encode(e: CommitEvent | RetractEvent) -> bytes:
    return orjson.dumps(wire(e))


def _person(d: Any, what: str) -> Person:
    if not isinstance(d, dict):
        raise EventError(f"{what} must be an object")
    name, email, time = d.get("name"), d.get("email"), d.get("time")
    if not isinstance(name, str) or not isinstance(email, str) or not isinstance(time, str):
        raise EventError(f"{what} needs string name, email and time")
    try:
        when = datetime.fromisoformat(time)
    except ValueError as exc:
        raise EventError(f"{what}.time is not ISO 8601: {time!r}") from exc
    if when.tzinfo is None:
        raise EventError(f"{what}.time has no UTC offset: {time!r}")
    raw = d.get("time_raw")
    if raw is not None and not isinstance(raw, str):
        raise EventError(f"{what}.time_raw must be a string")
    return Person(name, email, when, raw)


def _check_path(path: Any, form: int, what: str) -> str:
    if not isinstance(path, str) or not path:
        raise EventError(f"{what} must be a non-empty string")
    if form == PATH_FORM:
        if not is_path_text(path):
            raise EventError(f"{what} is not in path form {PATH_FORM}: {path[:200]!r}")
    elif "\0" in path:
        raise EventError(f"{what} contains NUL")
    return path


def _file(d: Any, form: int) -> FileChange:
    if not isinstance(d, dict):
        raise EventError("each file must be an object")
    path, added, removed = d.get("path"), d.get("added"), d.get("removed")
    binary, change = d.get("binary", False), d.get("change", "M")
    path = _check_path(path, form, "file.path")
    if not _count(added) or not _count(removed):
        raise EventError("file.added and file.removed must be non-negative integers")
    if not isinstance(binary, bool):
        raise EventError("file.binary must be a boolean")
    if change not in _CHANGE_TYPES:
        raise EventError(f"file.change must be one of A, D, M, T, not {change!r}")
    blob = _blob(d.get("blob"), "file.blob")
    if blob is not None and blob.binary not in (-1, 0, 1):
        raise EventError("file.blob.binary must be -1, 0 or 1")
    return FileChange(path, added, removed, binary, change, blob)


def _blob(d: Any, what: str) -> BlobDelta | None:
    """The blob measures of a file or merge file (absent: unknown, an earlier revision)."""
    if d is None:
        return None
    if not isinstance(d, dict):
        raise EventError(f"{what} must be an object")
    size, binary, text = d.get("bytes"), d.get("binary"), d.get("text_bytes")
    if not _int(size) or not _int(binary) or not _int(text):
        raise EventError(f"{what} needs integer bytes, binary and text_bytes")
    code = d.get("code")
    if code is not None and not _int(code):
        raise EventError(f"{what}.code must be an integer")
    return BlobDelta(size, binary, text, code)


def _merge_file(d: Any, form: int) -> MergeFile:
    if not isinstance(d, dict):
        raise EventError("each merge file must be an object")
    path, lines, presence = d.get("path"), d.get("lines"), d.get("presence")
    path = _check_path(path, form, "merge_files[].path")
    if not _int(lines) or not _int(presence):
        raise EventError("merge_files[].lines and presence must be integers")
    return MergeFile(path, lines, presence, _blob(d.get("blob"), "merge_files[].blob"))


def _int(n: Any) -> TypeGuard[int]:
    return isinstance(n, int) and not isinstance(n, bool)


def _count(n: Any) -> TypeGuard[int]:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def is_sha(s: Any) -> TypeGuard[str]:
    return isinstance(s, str) and len(s) in (40, 64) and all(c in "0123456789abcdef" for c in s)


def _load(raw: bytes) -> dict[str, Any]:
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise EventError("an event must be a JSON object")
    if d.get("v") != SCHEMA_VERSION:
        raise EventError(f"unsupported schema version {d.get('v')!r} (this metre reads v1)")
    return d


def repo_id_of(d: dict[str, Any]) -> int:
    """The event's `repo_id`, checked (every event type carries one)."""
    repo_id = d.get("repo_id")
    if not isinstance(repo_id, int) or isinstance(repo_id, bool) or repo_id <= 0:
        raise EventError("repo_id must be a positive integer")
    return repo_id


def _repo_and_sha(d: dict[str, Any]) -> tuple[int, str]:
    repo_id, sha = repo_id_of(d), d.get("sha")
    if not is_sha(sha):
        raise EventError(f"sha must be a lower-case hex object name, not {sha!r}")
    return repo_id, sha


def decode_event(raw: bytes) -> CommitEvent | RetractEvent | TagsEvent:
    """Parse and validate one record of any type; anything else raises `EventError`."""
    d = _load(raw)
    kind = d.get("type")
    if kind == "commit":
        return _commit(d)
    if kind == "retract":
        return RetractEvent(*_repo_and_sha(d))
    if kind == "tags":  # release tags (metre/contracts/tags.py, which imports this module)
        from metre.contracts.tags import decode_tags

        return decode_tags(d)
    raise EventError(f"unknown event type {kind!r}")


def decode(raw: bytes) -> CommitEvent:
    """Parse and validate one commit event; anything else (a retraction included) raises
    `EventError` with the reason. Consumers of every type use `decode_event`."""
    d = _load(raw)
    if d.get("type") != "commit":
        raise EventError(f"unknown event type {d.get('type')!r}")
    return _commit(d)


def _commit(d: dict[str, Any]) -> CommitEvent:
    repo_id, sha = _repo_and_sha(d)
    parents = d.get("parents")
    if not isinstance(parents, list) or not all(is_sha(p) for p in parents):
        raise EventError("parents must be a list of object names")
    summary = d.get("summary", "")
    if not isinstance(summary, str):
        raise EventError("summary must be a string")
    files = d.get("files", [])
    if not isinstance(files, list):
        raise EventError("files must be a list")
    merge_files = d.get("merge_files", [])
    if not isinstance(merge_files, list):
        raise EventError("merge_files must be a list")
    if merge_files and len(parents) < 2:
        raise EventError("merge_files is for merge commits only")
    form = d.get("path_form", 1)
    if type(form) is not int or form not in (1, PATH_FORM):
        raise EventError(f"unsupported path_form {form!r} (this metre reads 1 and {PATH_FORM})")
    return CommitEvent(
        repo_id=repo_id,
        sha=sha,
        parents=tuple(parents),
        author=_person(d.get("author"), "author"),
        committer=_person(d.get("committer"), "committer"),
        summary=summary,
        files=tuple(_file(f, form) for f in files),
        merge_files=tuple(_merge_file(m, form) for m in merge_files),
        path_form=form,
    )
