"""Co-change coupling: pairs of files changed in the same non-merge commit (pure definitions).

Commits that touch many files (reformatting, license headers, vendoring) say little about
coupling, so reads ignore commits touching more than `max_files` files (default 30).

Coupling keeps no table of its own: it is computed on read from the commit facts
(`file_changes`, processors/filereads.py) and cached until the repository's watermark moves.
A table of pairs would be written n(n-1)/2 times per commit of n files (240,000 upserted rows
for pytest's 17,666 commits, a third of a processor's time), while the read over the facts
takes a fraction of a second once per watermark and lets `max_files` be any read parameter.
Merges have no file changes of their own (`git log --numstat`), so they never count.
"""

from __future__ import annotations

from metre.processors.metrics.catalogue import INT32_MAX
from metre.processors.metrics.spec import MetricSpec, Param

MAX_FILES_LIMIT = 100
"""Largest `max_files` a read accepts: a commit of n files makes n(n-1)/2 pairs to count."""
DEFAULT_MAX_FILES = 30


def degree(shared: int, commits_a: int, commits_b: int) -> float:
    """shared / mean(commits_a, commits_b): 1.0 when the two always change together."""
    return shared / ((commits_a + commits_b) / 2)


SPEC: MetricSpec = MetricSpec(
    "coupling",
    "Pairs of files changed in the same non-merge commit, ignoring commits that touch more "
    "than max_files files: shared commits, and degree = shared / mean(commits of each file "
    "among the commits kept); ranked by shared commits, then degree, then paths",
    "commits, ratio",
    version=1,
    sources=("file_changes",),
    params=(
        Param(
            "max_files",
            "integer",
            DEFAULT_MAX_FILES,
            "ignore commits touching more files",
            ge=1,
            le=MAX_FILES_LIMIT,
        ),
        Param("min_shared", "integer", 2, "least shared commits of a pair", ge=1, le=INT32_MAX),
        Param(
            "path",
            "string",
            None,
            "only the partners of this file, in the served path form (docs/metrics.md, "
            '"Paths": a backslash doubled, bytes that are not UTF-8 as \\xNN)',
            min_length=1,
            max_length=4096,
        ),
        Param("limit", "integer", 100, "pairs returned", ge=1, le=1000),
    ),
)
