"""The records on metre's topics, as typed shapes (pure: no I/O).

Every producer builds its JSON through these `TypedDict`s (metre/contracts/events.py for commit and
retraction events, processors/updates.py and processors/removals.py for metric updates,
processors/runner.py for the dead letters' headers), so mypy holds the code to one definition
of each record, and `metre asyncapi` derives the JSON Schemas of docs/schemas/ and the AsyncAPI
document docs/asyncapi.yaml from the same classes (metre/asyncapi.py). The constraints
(`Field`) are the ones `metre.contracts.events.decode_event` enforces; descriptions become the
schemas'.

Version 1 of every payload: within a version, fields are only added, as optional
(`NotRequired`); a change of meaning or a removal makes a new `v` (docs/events.md).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

VERSION: Final = 1
"""`v` of every payload this metre writes and reads."""

REVISION: Final = 7
"""Optional fields added within version 1 so far (`time_raw`, `merge_files`, `removed`,
`path_form`, the tags event, `blob`, `blob.code`): the minor part of the contract's version,
`<VERSION>.<REVISION>.0` (docs/asyncapi.yaml)."""

_DOCS = ConfigDict(use_attribute_docstrings=True)

SHA_PATTERN: Final = r"^[0-9a-f]{40}([0-9a-f]{24})?$"
REPO_KEY_PATTERN: Final = r"^[1-9][0-9]*$"

Sha = Annotated[
    str,
    Field(pattern=SHA_PATTERN, description="A git object name: lower-case hex, SHA-1 or SHA-256."),
]
RepoId = Annotated[int, Field(ge=1, description="metre's repository id (GET /api/v1/repos).")]
Count = Annotated[int, Field(ge=0)]
Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""ISO 8601 with a UTC offset, as Python's `datetime.isoformat()` writes it."""
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
    time_raw: NotRequired[Annotated[str, Field(max_length=64)]]
    """Present only when `time` is not exactly git's value (it does not fit a date): the
    recorded date text. Added within version 1."""


@with_config(_DOCS)
class BlobWire(TypedDict):
    """A commit's own contribution to measures of the blob at a path (signed): summed over a
    commit and all its ancestors, files' and merge files' `blob` give that commit's blob."""

    bytes: int
    """The blob's size in bytes (0 for a submodule entry and for an absent path)."""
    binary: int
    """Whether the blob is binary (1), by git's rule: a NUL byte in the first 8000 bytes."""
    text_bytes: int
    """The size of a blob that is not binary (0 for a binary one)."""
    code: NotRequired[int]
    """Lines of code: lines holding something other than whitespace and comments, by the
    comment syntax of the path's Linguist language (0 for a binary blob, a symlink, a submodule
    and an absent path); absent: unknown. Added within version 1."""


@with_config(_DOCS)
class FileWire(TypedDict):
    """One file of a commit, as `git log --numstat --no-renames --minimal` counts it."""

    path: TreePath
    added: Count
    """Lines added (0 for a binary file)."""
    removed: Count
    """Lines removed (0 for a binary file)."""
    binary: bool
    """A NUL byte in the first 8000 bytes, as git decides."""
    change: Literal["A", "D", "M", "T"]
    """Added, deleted, modified, type changed (file, symlink, submodule)."""
    blob: NotRequired[BlobWire]
    """The blob's measures after the commit minus before (`binary` is then -1, 0 or 1);
    absent: unknown. Added within version 1."""


@with_config(_DOCS)
class MergeFileWire(TypedDict):
    """What a merge commit itself contributes to one path's state at the head (signed)."""

    path: TreePath
    lines: int
    """The merge's own contribution to the path's line count."""
    presence: int
    """The merge's own contribution to whether the path exists (1 = exists)."""
    blob: NotRequired[BlobWire]
    """The merge's own contribution to the blob's measures; absent: unknown. Added within
    version 1."""


@with_config(_DOCS)
class CommitEventWire(TypedDict):
    """Commit event, version 1: one commit reachable from a repository's tracked branch."""

    v: Literal[1]
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["commit"]
    id: Annotated[str, Field(pattern=r"^[1-9][0-9]*:[0-9a-f]{40}([0-9a-f]{24})?$")]
    """`<repo_id>:<sha>`, the identity of the event (it recurs after a retraction)."""
    repo_id: RepoId
    sha: Sha
    parents: list[Sha]
    """A merge has two or more."""
    is_merge: bool
    author: PersonWire
    committer: PersonWire
    summary: str
    """First line of the message."""
    path_form: NotRequired[Literal[1, 2]]
    """How `files[].path` and `merge_files[].path` spell git's bytes: 2, the injective form
    (a backslash doubled, each byte that is not UTF-8 as `\\xNN`; docs/metrics.md, "Paths");
    absent or 1, the old form (invalid bytes as `\\xNN`, backslashes as they are), which
    could make two paths one. metre writes 2. Added within version 1."""
    files: list[FileWire]
    """Exactly what `git log --numstat` prints for the commit: a merge has none."""
    merge_files: NotRequired[list[MergeFileWire]]
    """Merge commits only, absent when empty: the merge's own contribution per path, only
    paths where some value is non-zero. Added within version 1."""


@with_config(_DOCS)
class RetractEventWire(TypedDict):
    """Retraction event, version 1: commit `sha` left the tracked history; undo its effect,
    if it is held."""

    v: Literal[1]
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["retract"]
    id: Annotated[str, Field(pattern=r"^[1-9][0-9]*:[0-9a-f]{40}([0-9a-f]{24})?:retract$")]
    """`<repo_id>:<sha>:retract`."""
    repo_id: RepoId
    sha: Sha


@with_config(_DOCS)
class ReleaseTagWire(TypedDict):
    """One release tag: a tag whose name matches METRE_RELEASE_TAGS, on a tracked commit."""

    name: str
    """The name after refs/tags/."""
    sha: Sha
    """The commit it names (peeled through annotated tags)."""
    time: str
    """ISO 8601 with its UTC offset: the tagger date of an annotated tag, else the tagged
    commit's committer date."""
    annotated: bool


@with_config(_DOCS)
class TagsEventWire(TypedDict):
    """Tags event, version 1: the complete set of a repository's release tags, replacing the
    last one applied (a tag that moved or vanished is retracted by the next snapshot). Added
    within version 1."""

    v: Literal[1]
    """Schema version; a consumer rejects versions it does not know."""
    type: Literal["tags"]
    id: Annotated[str, Field(pattern=r"^[1-9][0-9]*:tags:([0-9a-f]+|none)$")]
    """`<repo_id>:tags:<digest of the set>` (`none` for the empty set)."""
    repo_id: RepoId
    tags: list[ReleaseTagWire]


@with_config(_DOCS)
class MetricUpdateWire(TypedDict):
    """Metric-update event, version 1: what one processed batch changed for one repository (or
    the notice that the repository was removed)."""

    v: Literal[1]
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
