"""Co-change coupling: pairs of files changed in the same non-merge commit (pure).

Commits that touch many files (reformatting, license headers, vendoring) say little about
coupling, so reads ignore commits touching more than `max_files` files (default 30). To let
that parameter change on read, the tables keep the commit size next to each count:

* `coupling_files` (repo, path, size): non-merge commits of `size` files touching the path,
* `coupling_pairs` (repo, path_a, path_b, size): commits of `size` files touching both
  (path_a < path_b in code point order).

Commits touching more than `HARD_CAP` files store nothing here (a commit of n files makes
n(n-1)/2 pair rows), so `max_files` can be at most `HARD_CAP`. The degree of a pair is
shared / mean(commits of a, commits of b), both counted over the commits kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations

from ingest.events import CommitEvent
from processors.metrics import Delta, Rows
from processors.metrics.catalogue import Entry, Param
from processors.metrics.table import Column, MetricTable

FILES = "coupling_files"
PAIRS = "coupling_pairs"
HARD_CAP = 100
"""Largest commit (in files) whose pairs are stored; the upper bound of `max_files`."""
DEFAULT_MAX_FILES = 30


def coupling(e: CommitEvent) -> Iterator[Delta]:
    """Per-file and per-pair counts of one commit, keyed by the commit's size in files."""
    paths = sorted({f.path for f in e.files})
    size = len(paths)
    if size == 0 or size > HARD_CAP:
        return
    for p in paths:
        yield Delta(FILES, (e.repo_id, p, size), {"commits": 1})
    for a, b in combinations(paths, 2):
        yield Delta(PAIRS, (e.repo_id, a, b, size), {"shared": 1})


def fold(e: CommitEvent, rows: Rows) -> None:
    """`coupling`'s deltas merged straight into `rows` (the hot path: n(n-1)/2 pairs)."""
    paths = sorted({f.path for f in e.files})
    size = len(paths)
    if size == 0 or size > HARD_CAP:
        return
    rid = e.repo_id
    files = rows[FILES]
    for p in paths:
        k = (rid, p, size)
        r = files.get(k)
        if r is None:
            files[k] = [1]
        else:
            r[0] += 1
    pairs = rows[PAIRS]
    for a, b in combinations(paths, 2):
        pair = (rid, a, b, size)
        r = pairs.get(pair)
        if r is None:
            pairs[pair] = [1]
        else:
            r[0] += 1


def degree(shared: int, commits_a: int, commits_b: int) -> float:
    """shared / mean(commits_a, commits_b): 1.0 when the two always change together."""
    return shared / ((commits_a + commits_b) / 2)


_REPO = Column("repo_id", "bigint")
_SIZE = Column("size", "smallint")

METRICS = (coupling,)
FOLD = fold
TABLES = (
    MetricTable(FILES, key=(_REPO, Column("path", "text"), _SIZE), counters=("commits",)),
    MetricTable(
        PAIRS,
        key=(_REPO, Column("path_a", "text"), Column("path_b", "text"), _SIZE),
        counters=("shared",),
    ),
)
ENTRIES = (
    Entry(
        "coupling",
        "Pairs of files changed in the same non-merge commit, ignoring commits that touch more "
        "than max_files files: shared commits, and degree = shared / mean(commits of each file "
        "among the commits kept); ranked by shared commits, then degree, then paths",
        "commits, ratio",
        version=1,
        tables=(FILES, PAIRS),
        params=(
            Param(
                "max_files", "integer", DEFAULT_MAX_FILES, f"ignore larger commits (1..{HARD_CAP})"
            ),
            Param("min_shared", "integer", 2, "least shared commits of a pair"),
            Param("path", "string", None, "only the partners of this file"),
            Param("limit", "integer", 100, "pairs returned (1 to 1000)"),
        ),
    ),
)
