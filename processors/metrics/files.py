"""Per-file history: changes, lines, authors, presence at head; inputs of hotspots and
ownership (pure).

Two additive tables, all counters (so retraction is a negated delta), from each non-merge
commit's file changes (`git log --numstat --no-renames --minimal`):

* `file_stats` (repo, path): commits, lines added and removed, `presence` (+1 per add, -1 per
  delete: the file exists at head when positive), binary changes, the sums of the changes'
  blob measures (`blob_bytes`, `blob_binary`, `blob_text_bytes`: with the merges' own parts,
  the blob at head) and `blob_unknown` (changes whose event carried no blob measures: the sums
  are served only while it is 0), the sum of the changes' lines of code (`blob_code`, with
  `code_unknown` counting changes whose event carried no `code`), and the latest change (UTC
  author time, and whether that change was binary).
* `file_authors` (repo, path, lower-cased author email): commits, adds ("created": the author
  added the path, FA of the degree of authorship), lines added and removed.

Hotspots count changes within a time window: they are read from the facts (`file_changes` joined
with `commits` by author time), which a table keyed by (path, author, day) would only copy.

With `--no-renames` a renamed file is a new path added by whoever renamed it: that author is its
creator, and the history of the old path stays with the old path.

Merge commits carry no file changes (event contract v1), so the net lines (added - removed) and
`presence` equal the file at head only when merges combined their sides without changing them
(no conflict resolution or "evil" merge, no identical change made on both sides); see
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

from metre.contracts.events import BlobDelta, CommitEvent
from metre.processors.metrics import Delta, Rows
from metre.processors.metrics.catalogue import INT32_MAX
from metre.processors.metrics.spec import MetricSpec, Param, Writer
from metre.processors.metrics.table import Column, Extreme, MetricTable

STATS = "file_stats"
AUTHORS = "file_authors"

_PRESENCE = {"A": 1, "D": -1}


def blob_counters(b: BlobDelta | None) -> tuple[int, int, int, int]:
    """(bytes, binary, text bytes, unknown) of a file's or merge file's blob measures: an
    event without them counts as one unknown contribution, so sums are served only when every
    contribution was known (and again after the history was published anew)."""
    if b is None:
        return (0, 0, 0, 1)
    return (b.bytes, b.binary, b.text_bytes, 0)


def code_counters(b: BlobDelta | None) -> tuple[int, int]:
    """(lines of code, unknown) of a file's or merge file's blob measures: `code` was added
    to events after the others, so it has its own count of unknown contributions."""
    if b is None or b.code is None:
        return (0, 1)
    return (b.code, 0)


def blob_columns(b: BlobDelta | None) -> dict[str, int]:
    """The blob-measure counters of a file change or merge file, as both tables name them."""
    size, binary, text, unknown = blob_counters(b)
    code, code_unknown = code_counters(b)
    return {
        "blob_bytes": size,
        "blob_binary": binary,
        "blob_text_bytes": text,
        "blob_unknown": unknown,
        "blob_code": code,
        "code_unknown": code_unknown,
    }


def files(e: CommitEvent) -> Iterator[Delta]:
    """Rows of the two per-file tables touched by one commit's file changes."""
    when = e.author.time.astimezone(UTC)
    email = e.author.email.lower()
    for f in e.files:
        yield Delta(
            STATS,
            (e.repo_id, f.path),
            {
                "commits": 1,
                "added": f.added,
                "removed": f.removed,
                "presence": _PRESENCE.get(f.change, 0),
                "binary_changes": int(f.binary),
                **blob_columns(f.blob),
            },
            greatest={"last": (when, f.binary)},
        )
        yield Delta(
            AUTHORS,
            (e.repo_id, f.path, email),
            {
                "commits": 1,
                "created": int(f.change == "A"),
                "added": f.added,
                "removed": f.removed,
            },
        )


def fold(e: CommitEvent, rows: Rows) -> None:
    """`files`'s deltas merged straight into `rows` (the hot path: two rows per file)."""
    when = e.author.time.astimezone(UTC)
    email = e.author.email.lower()
    rid = e.repo_id
    stats, authors = rows[STATS], rows[AUTHORS]
    for f in e.files:
        path, added, removed = f.path, f.added, f.removed
        presence = _PRESENCE.get(f.change, 0)
        last = (when, f.binary)
        b = f.blob
        k2 = (rid, path)
        r = stats.get(k2)
        code, code_unknown = code_counters(b)
        if r is None:
            if b is None:
                stats[k2] = [1, added, removed, presence, int(f.binary), 0, 0, 0, 1, 0, 1, last]
            else:
                stats[k2] = [
                    1, added, removed, presence, int(f.binary),
                    b.bytes, b.binary, b.text_bytes, 0, code, code_unknown, last,
                ]  # fmt: skip
        else:
            r[0] += 1
            r[1] += added
            r[2] += removed
            r[3] += presence
            r[4] += int(f.binary)
            if b is None:
                r[8] += 1
            else:
                r[5] += b.bytes
                r[6] += b.binary
                r[7] += b.text_bytes
            r[9] += code
            r[10] += code_unknown
            if last > r[11]:
                r[11] = last
        created = int(f.change == "A")
        k3 = (rid, path, email)
        r = authors.get(k3)
        if r is None:
            authors[k3] = [1, created, added, removed]
        else:
            r[0] += 1
            r[1] += created
            r[2] += added
            r[3] += removed


_REPO = Column("repo_id", "bigint")
_PATH = Column("path", "text")
_EMAIL = Column("email", "text")

WRITER: Writer = Writer(
    "files",
    tables=(
        MetricTable(
            STATS,
            key=(_REPO, _PATH),
            counters=(
                "commits",
                "added",
                "removed",
                "presence",
                "binary_changes",
                "blob_bytes",
                "blob_binary",
                "blob_text_bytes",
                "blob_unknown",
                "blob_code",
                "code_unknown",
            ),
            extremes=(
                Extreme(
                    "last",
                    "greatest",
                    (Column("last_change_at", "timestamptz"), Column("last_binary", "boolean")),
                ),
            ),
        ),
        MetricTable(
            AUTHORS,
            key=(_REPO, _PATH, _EMAIL),
            counters=("commits", "created", "added", "removed"),
        ),
    ),
    oracle=files,
    fold=fold,
)

FILE_SORTS = ("commits", "lines", "churn", "path")
LIMIT = Param("limit", "integer", 100, "page size", ge=1, le=1000)
OFFSET = Param("offset", "integer", 0, "rows to skip", ge=0, le=INT32_MAX)

FILES: MetricSpec = MetricSpec(
    "files",
    "Per file (every path in the tracked history): non-merge commits touching it, lines "
    "added and removed, distinct authors, whether it exists at head, the UTC author time of "
    "its latest change, and its current length in lines (git's count: a last line without "
    "a newline counts; null when the file is absent at head or was ever binary), "
    "whether its latest change was binary (`last_change_binary`; `binary` is its old "
    "name) and whether any change was (`ever_binary`, which is why `lines` is null); and "
    "the blob at head: its size (`bytes`), whether it is binary by git's rule "
    "(`binary_at_head`) and its lines of code (`code_lines`: lines holding something other "
    "than whitespace and comments, by the comment syntax of its Linguist language; 0 for "
    "binary blobs, symlinks and submodules), null when the file is absent at head or the "
    "measure is not known yet",
    "commits, lines, bytes, code lines",
    version=5,
    sources=(STATS, AUTHORS, "file_merge_lines"),
    params=(
        Param("sort", "string", "commits", "order (descending; path ascending)", FILE_SORTS),
        Param("exists", "boolean", None, "only files present (true) or absent (false) at head"),
        LIMIT,
        OFFSET,
    ),
    writer=WRITER,
)
HOTSPOTS: MetricSpec = MetricSpec(
    "hotspots",
    "Files present at head ranked by change frequency x size (CodeScene): non-merge commits "
    "touching the file within the window times its lines of code at head (`code_lines`: "
    "blank and comment lines excluded; `lines` is its length); the window is the `days` "
    "UTC days ending with the day of the repository's latest author date; vendored, "
    "generated and lock files (Linguist's path rules) and files without code are left out",
    "commits x code lines",
    version=4,
    sources=(STATS, "file_changes", "activity_daily", "file_merge_lines"),
    params=(Param("days", "integer", 365, "window length in UTC days", ge=1, le=36_500), LIMIT),
)
