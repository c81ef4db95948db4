"""The wire contract between pollers and processors (pure: no I/O).

A `CommitEvent` says everything metre needs to know about one commit of one repository; a
`RetractEvent` says that a commit left the tracked history (a force-push, a change of branch or
of .mailmap) and its effect must be undone. Events are JSON (orjson), carry a schema version `v`
and a `type`, and are identified by `repo_id:sha` (`repo_id:sha:retract`), never by a broker
offset, so redelivery and republishing are harmless. See docs/events.md.

Reading a record is pydantic's validation of the shapes of metre/contracts/wire.py, the ones the
JSON Schemas of docs/schemas/ are generated from, straight from the bytes; then the validated
dict becomes the frozen dataclasses below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Final, Literal

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, from_json

from metre.contracts.paths import PATH_FORM
from metre.contracts.wire import (
    VERSION,
    BlobWire,
    CommitEventWire,
    EventRecord,
    FileWire,
    MergeFileWire,
    PersonWire,
    RetractEventWire,
    TagsEventWire,
)

if TYPE_CHECKING:
    from metre.contracts.tags import TagsEvent

SCHEMA_VERSION: Final = VERSION

ChangeType = Literal["A", "D", "M", "T"]
"""Added, deleted, modified, type changed (file <-> symlink <-> submodule)."""


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


@cache
def _events() -> TypeAdapter[CommitEventWire | RetractEventWire | TagsEventWire]:
    """The reader of every type, built on first use (pydantic takes a good part of a second to
    build it): roles that only encode never pay for it."""
    return TypeAdapter(EventRecord)


def decode_event(raw: bytes) -> CommitEvent | RetractEvent | TagsEvent:
    """Parse and validate one record of any type; anything else raises `EventError`."""
    try:
        d = _events().validate_json(raw)
    except ValidationError as exc:
        raise _refusal(raw, exc, ("commit", "retract", "tags")) from exc
    if d["type"] == "commit":
        return _commit(d)
    if d["type"] == "retract":
        return RetractEvent(d["repo_id"], d["sha"])
    from metre.contracts.tags import decode_tags  # which imports this module

    return decode_tags(d)


def decode(raw: bytes) -> CommitEvent:
    """Parse and validate one commit event; anything else (a retraction included) raises
    `EventError` with the reason. Consumers of every type use `decode_event` (the same
    reader)."""
    try:
        d = _events().validate_json(raw)
    except ValidationError as exc:
        raise _refusal(raw, exc, ("commit",)) from exc
    if d["type"] != "commit":
        raise EventError(f"unknown event type {d['type']!r}")
    return _commit(d)


def _refusal(raw: bytes, exc: ValidationError, types: tuple[str, ...]) -> EventError:
    """The reason a record is refused, the version and the type before the rest (as a consumer
    decides what a record is before what is wrong with it)."""
    errors = exc.errors(include_url=False)
    if errors[0]["type"] == "json_invalid":
        return EventError(f"not JSON: {errors[0]['ctx']['error']}")
    d = from_json(raw)  # it is JSON: validation read it
    if not isinstance(d, dict):
        return EventError("an event must be a JSON object")
    if type(d.get("v")) is not int or d.get("v") != SCHEMA_VERSION:
        return EventError(f"unsupported schema version {d.get('v')!r} (this metre reads v1)")
    if d.get("type") not in types:
        return EventError(f"unknown event type {d.get('type')!r}")
    # the union's errors start with the tag ("commit")
    reasons = [_reason(e["loc"][1:], e) for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return EventError("; ".join(reasons) + more)


def _reason(loc: tuple[int | str, ...], e: ErrorDetails) -> str:
    """One error as `files[0].added: Input should be ...`, with the value when it is short."""
    where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in loc).lstrip(".")
    msg = e["msg"].removeprefix("Value error, ")
    value = e.get("input")
    if e["type"] not in ("value_error", "missing") and not isinstance(value, (dict, list)):
        msg += f", not {repr(value)[:200]}"
    return f"{where}: {msg}" if where else msg


def _person(d: PersonWire) -> Person:
    return Person(d["name"], d["email"], datetime.fromisoformat(d["time"]), d.get("time_raw"))


def _blob(d: BlobWire | None) -> BlobDelta | None:
    """The blob measures of a file or merge file (absent: unknown, an earlier revision)."""
    if d is None:
        return None
    return BlobDelta(d["bytes"], d["binary"], d["text_bytes"], d.get("code"))


def _commit(d: CommitEventWire) -> CommitEvent:
    """The event of a validated record (`CommitEventRecord`'s rules held)."""
    return CommitEvent(
        repo_id=d["repo_id"],
        sha=d["sha"],
        parents=tuple(d["parents"]),
        author=_person(d["author"]),
        committer=_person(d["committer"]),
        summary=d["summary"],
        files=tuple(  # of a list: faster than of a generator
            [
                FileChange(
                    f["path"],
                    f["added"],
                    f["removed"],
                    f["binary"],
                    f["change"],
                    _blob(f.get("blob")),
                )
                for f in d["files"]
            ]
        ),
        merge_files=tuple(
            [
                MergeFile(m["path"], m["lines"], m["presence"], _blob(m.get("blob")))
                for m in d.get("merge_files", ())
            ]
        ),
        path_form=d.get("path_form", 1),
    )
