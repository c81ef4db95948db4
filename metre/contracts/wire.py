"""The records on metre's topics, as typed shapes (pure: no I/O).

Every producer builds its JSON through these `TypedDict`s (metre/contracts/events.py for commit and
retraction events, processors/updates.py and processors/removals.py for metric updates,
processors/runner.py for the dead letters' headers), so mypy holds the code to one definition
of each record, and `metre asyncapi` derives the JSON Schemas of docs/schemas/ and the AsyncAPI
document docs/asyncapi.yaml from the same classes (metre/asyncapi.py). The same classes are the
validator: `metre.contracts.events.decode_event` is pydantic's validation of `EventRecord`, so
the constraints (`Field`, and the validators the schemas cannot spell, such as the path form)
are the reader's and descriptions become the schemas'.

Three marks are for the reader only and leave the schemas as they are: a `Field(default=...)` on
a key that is not `NotRequired` is what the reader has always assumed when a record lacks a key
every producer writes; `SkipValidation` marks a key it has always ignored, since it derives it
(`id`, `is_merge`); `Nullable` on an optional key: it has always read a null as absent. The
schemas require the first two kinds and do not say null for the third (metre/asyncapi.py).

Version 1 of every payload: within a version, fields are only added, as optional
(`NotRequired`); a change of meaning or a removal makes a new `v` (docs/events.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, NotRequired, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, SkipValidation, with_config
from typing_extensions import TypedDict

from metre.contracts.paths import PATH_FORM, is_path_text

VERSION: Final = 1
"""`v` of every payload this metre writes and reads."""

REVISION: Final = 7
"""Optional fields added within version 1 so far (`time_raw`, `merge_files`, `removed`,
`path_form`, the tags event, `blob`, `blob.code`): the minor part of the contract's version,
`<VERSION>.<REVISION>.0` (docs/asyncapi.yaml)."""

_DOCS = ConfigDict(use_attribute_docstrings=True, strict=True)
"""Strict: JSON's types as they are (no "1" for 1, no true for 1), as the reader always was."""

SHA_PATTERN: Final = r"^[0-9a-f]{40}([0-9a-f]{24})?$"
REPO_KEY_PATTERN: Final = r"^[1-9][0-9]*$"

Sha = Annotated[
    str,
    Field(pattern=SHA_PATTERN, description="A git object name: lower-case hex, SHA-1 or SHA-256."),
]
INT64_MAX: Final = 2**63 - 1
"""Integers are PostgreSQL's bigint: a reader refuses what the store could not hold."""

RepoId = Annotated[
    int, Field(ge=1, le=INT64_MAX, description="metre's repository id (GET /api/v1/repos).")
]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]


def _null_unsaid(schema: dict[str, Any]) -> None:
    """The JSON Schema of `X | None` without its null: what producers write."""
    options = schema.pop("anyOf")
    schema.update(next(o for o in options if o != {"type": "null"}))


_T = TypeVar("_T")
Nullable = Annotated[_T | None, Field(json_schema_extra=_null_unsaid)]
"""An optional key whose null the reader takes for absent; its schema says no null (producers
leave the key out)."""


def _integer(value: object) -> object:
    """An integer literal (pydantic's `Literal[1]` also takes true and 1.0)."""
    if type(value) is not int:
        raise ValueError(f"must be an integer, not {value!r}")
    return value


SchemaVersion = Annotated[Literal[1], BeforeValidator(_integer)]
"""The `v` of every record: the integer 1 (not true, not 1.0)."""


def _short(text: str) -> str:
    return repr(text[:200])


def _instant(text: str) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not ISO 8601: {_short(text)}") from None
    if when.tzinfo is None:
        raise ValueError(f"no UTC offset: {_short(text)}")
    return text


Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"}), AfterValidator(_instant)]
"""ISO 8601 with a UTC offset, as Python's `datetime.isoformat()` writes it (and reads it)."""
TreePath = Annotated[
    str,
    Field(
        min_length=1,
        description="Path in the tree, UTF-8; bytes that are not UTF-8 as backslash escapes.",
    ),
]


@with_config(_DOCS)
class PersonWire(TypedDict):
    """An author or committer as recorded in the commit, mapped by the head's .mailmap."""

    name: str
    """Re-encoded to UTF-8 from the commit's `encoding` header, invalid bytes replaced."""
    email: str
    """Lower-cased."""
    time: Instant
    """ISO 8601: what `git log` shows, with the person's own UTC offset (or a bounded stand-in,
    when `time_raw` is present)."""
    time_raw: NotRequired[Nullable[Annotated[str, Field(max_length=64)]]]
    """Present only when `time` is not exactly git's value (it does not fit a date): the
    recorded date text. Added within version 1."""


@with_config(_DOCS)
class BlobWire(TypedDict):
    """A commit's own contribution to measures of the blob at a path (signed): summed over a
    commit and all its ancestors, files' and merge files' `blob` give that commit's blob."""

    bytes: Int64
    """The blob's size in bytes (0 for a submodule entry and for an absent path)."""
    binary: Int64
    """Whether the blob is binary (1), by git's rule: a NUL byte in the first 8000 bytes."""
    text_bytes: Int64
    """The size of a blob that is not binary (0 for a binary one)."""
    code: NotRequired[Nullable[Int64]]
    """Lines of code: lines holding something other than whitespace and comments, by the
    comment syntax of the path's Linguist language (0 for a binary blob, a symlink, a submodule
    and an absent path); absent: unknown. Added within version 1."""


def _unit_binary(blob: BlobWire) -> BlobWire:
    if blob["binary"] not in (-1, 0, 1):
        raise ValueError("a file's blob.binary must be -1, 0 or 1")
    return blob


@with_config(_DOCS)
class FileWire(TypedDict):
    """One file of a commit, as `git log --numstat --no-renames --minimal` counts it."""

    path: TreePath
    added: Count
    """Lines added (0 for a binary file)."""
    removed: Count
    """Lines removed (0 for a binary file)."""
    binary: Annotated[bool, Field(default=False)]
    """A NUL byte in the first 8000 bytes, as git decides."""
    change: Annotated[Literal["A", "D", "M", "T"], Field(default="M")]
    """Added, deleted, modified, type changed (file, symlink, submodule)."""
    blob: NotRequired[Nullable[Annotated[BlobWire, AfterValidator(_unit_binary)]]]
    """The blob's measures after the commit minus before (`binary` is then -1, 0 or 1);
    absent: unknown. Added within version 1."""


@with_config(_DOCS)
class MergeFileWire(TypedDict):
    """What a merge commit itself contributes to one path's state at the head (signed)."""

    path: TreePath
    lines: Int64
    """The merge's own contribution to the path's line count."""
    presence: Int64
    """The merge's own contribution to whether the path exists (1 = exists)."""
    blob: NotRequired[Nullable[BlobWire]]
    """The merge's own contribution to the blob's measures; absent: unknown. Added within
    version 1."""


@with_config(_DOCS)
class CommitEventWire(TypedDict):
    """Commit event, version 1: one commit reachable from a repository's tracked branch."""

    v: SchemaVersion
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["commit"]
    id: Annotated[
        str,
        Field(pattern=r"^[1-9][0-9]*:[0-9a-f]{40}([0-9a-f]{24})?$", default=""),
        SkipValidation(),
    ]
    """`<repo_id>:<sha>`, the identity of the event (it recurs after a retraction)."""
    repo_id: RepoId
    sha: Sha
    parents: list[Sha]
    """A merge has two or more."""
    is_merge: Annotated[bool, Field(default=False), SkipValidation()]
    author: PersonWire
    committer: PersonWire
    summary: Annotated[str, Field(default="")]
    """First line of the message."""
    path_form: NotRequired[Annotated[Literal[1, 2], BeforeValidator(_integer)]]
    """How `files[].path` and `merge_files[].path` spell git's bytes: 2, the injective form
    (a backslash doubled, each byte that is not UTF-8 as `\\xNN`; docs/metrics.md, "Paths");
    absent or 1, the old form (invalid bytes as `\\xNN`, backslashes as they are), which
    could make two paths one. metre writes 2. Added within version 1."""
    files: Annotated[list[FileWire], Field(default_factory=list)]
    """Exactly what `git log --numstat` prints for the commit: a merge has none."""
    merge_files: NotRequired[list[MergeFileWire]]
    """Merge commits only, absent when empty: the merge's own contribution per path, only
    paths where some value is non-zero. Added within version 1."""


@with_config(_DOCS)
class RetractEventWire(TypedDict):
    """Retraction event, version 1: commit `sha` left the tracked history; undo its effect,
    if it is held."""

    v: SchemaVersion
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["retract"]
    id: Annotated[
        str,
        Field(pattern=r"^[1-9][0-9]*:[0-9a-f]{40}([0-9a-f]{24})?:retract$", default=""),
        SkipValidation(),
    ]
    """`<repo_id>:<sha>:retract`."""
    repo_id: RepoId
    sha: Sha


@with_config(_DOCS)
class ReleaseTagWire(TypedDict):
    """One release tag: a tag whose name matches METRE_RELEASE_TAGS, on a tracked commit."""

    name: Annotated[str, Field(min_length=1)]
    """The name after refs/tags/."""
    sha: Sha
    """The commit it names (peeled through annotated tags)."""
    time: Instant
    """ISO 8601 with its UTC offset: the tagger date of an annotated tag, else the tagged
    commit's committer date."""
    annotated: bool


def _unique_names(tags: list[ReleaseTagWire]) -> list[ReleaseTagWire]:
    if len({t["name"] for t in tags}) != len(tags):
        raise ValueError("tags[].name must be unique")
    return tags


@with_config(_DOCS)
class TagsEventWire(TypedDict):
    """Tags event, version 1: the complete set of a repository's release tags, replacing the
    last one applied (a tag that moved or vanished is retracted by the next snapshot). Added
    within version 1."""

    v: SchemaVersion
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["tags"]
    id: Annotated[
        str, Field(pattern=r"^[1-9][0-9]*:tags:([0-9a-f]+|none)$", default=""), SkipValidation()
    ]
    """`<repo_id>:tags:<digest of the set>` (`none` for the empty set)."""
    repo_id: RepoId
    tags: Annotated[list[ReleaseTagWire], AfterValidator(_unique_names)]


def _path_rules(e: CommitEventWire) -> CommitEventWire:
    """What a field's type cannot say: paths are checked in the event's own `path_form`, and
    only a merge has `merge_files`."""
    form = e.get("path_form", 1)
    for key, items in (("files", e["files"]), ("merge_files", e.get("merge_files", ()))):
        for i, f in enumerate(items):
            path = f["path"]
            if form == PATH_FORM:
                if not is_path_text(path):
                    raise ValueError(f"{key}[{i}].path is not in path form {form}: {_short(path)}")
            elif "\0" in path:
                raise ValueError(f"{key}[{i}].path contains NUL")
    if e.get("merge_files") and len(e["parents"]) < 2:
        raise ValueError("merge_files is for merge commits only")
    return e


CommitEventRecord = Annotated[CommitEventWire, AfterValidator(_path_rules)]
"""A commit event as the reader validates it (its JSON Schema is `CommitEventWire`'s)."""

EventRecord = Annotated[
    CommitEventRecord | RetractEventWire | TagsEventWire, Field(discriminator="type")
]
"""Any record of the commits topic, by its `type`."""


@with_config(_DOCS)
class MetricUpdateWire(TypedDict):
    """Metric-update event, version 1: what one processed batch changed for one repository (or
    the notice that the repository was removed)."""

    v: SchemaVersion
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["metric-update"]
    repo_id: RepoId
    head: Sha | None
    """The newest commit the repository's poller had published; null after a removal."""
    watermark: Instant
    """ISO 8601, UTC: when this batch changed the repository's tables, the
    `provenance.watermark` of the API's results computed after it."""
    generation: Count
    """How many batches have changed the repository's tables."""
    metrics: list[str]
    """Catalogue names (GET /api/v1/metrics) whose tables changed."""
    tables: list[str]
    """The additive tables changed."""
    commits: Count
    """Commits newly applied for this repository in the batch."""
    retracted: Count
    """Commits retracted for this repository in the batch (or held when it was removed)."""
    removed: NotRequired[bool]
    """Present (true) only on the removal notice; its retractions precede it. Added within
    version 1."""


Decimal = Annotated[str, Field(pattern=r"^[0-9]+$")]


@with_config(_DOCS)
class DeadLetterHeaders(TypedDict):
    """The headers a processor adds (after the original record's own) to the copy of a record
    that is not a valid event; values are UTF-8 bytes on the wire."""

    error: str
    """Why the record was refused."""
    topic: str
    """The topic it came from."""
    partition: Decimal
    """Its partition there, ASCII decimal."""
    offset: Decimal
    """Its offset there, ASCII decimal."""
