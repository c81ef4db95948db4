"""What merges contribute themselves to the state at head (pure).

Merge commits carry no numstat rows (`git log --numstat`), so sums over non-merge commits
(`file_stats`: added - removed, presence; `language_lines`) miss what a merge decided: a
resolved conflict, a change of its own, a side's change it dropped, a change both sides made
(counted twice). A merge's event carries that as `merge_files`
(metre.contracts.events.MergeFile: per
path, signed lines and presence, by inclusion-exclusion over its parents and merge bases), a
property of the commit alone; summed with the non-merge commits over the tracked history it
gives the head's tree. Two additive tables, so retraction is a negated delta like everywhere:

* `file_merge_lines` (repo, path): merges, lines, presence, and the blob measures' sums
  (bytes, binary, text bytes, unknown, lines of code and their unknown count: as in
  `file_stats`, processors/metrics/files.py);
* `language_merge_lines` (repo, language): merges, lines (binary content counts 0 lines),
  text bytes, unknown.

Read with `file_stats` (processors/filereads.py) and `language_lines` (processors/reads.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta
from metre.processors.metrics.files import blob_columns
from metre.processors.metrics.languages import counted_language
from metre.processors.metrics.spec import Writer
from metre.processors.metrics.table import Column, MetricTable

FILES = "file_merge_lines"
LANGUAGES = "language_merge_lines"


def merges(e: CommitEvent) -> Iterator[Delta]:
    """One row per path of the merge's `merge_files`, one per language they fall in."""
    by_language: dict[str, list[int]] = {}
    for m in e.merge_files:
        blob = blob_columns(m.blob)
        yield Delta(
            FILES,
            (e.repo_id, m.path),
            {"merges": 1, "lines": m.lines, "presence": m.presence, **blob},
        )
        lang = counted_language(m.path)
        if lang is not None:
            r = by_language.setdefault(lang, [0, 0, 0])
            r[0] += m.lines
            r[1] += blob["blob_text_bytes"]
            r[2] += blob["blob_unknown"]
    for lang, (lines, text, unknown) in by_language.items():
        yield Delta(
            LANGUAGES,
            (e.repo_id, lang),
            {"merges": 1, "lines": lines, "text_bytes": text, "blob_unknown": unknown},
        )


_REPO = Column("repo_id", "bigint")

WRITER: Writer = Writer(
    "merges",
    tables=(
        MetricTable(
            FILES,
            key=(_REPO, Column("path", "text")),
            counters=(
                "merges",
                "lines",
                "presence",
                "blob_bytes",
                "blob_binary",
                "blob_text_bytes",
                "blob_unknown",
                "blob_code",
                "code_unknown",
            ),
        ),
        MetricTable(
            LANGUAGES,
            key=(_REPO, Column("language", "text")),
            counters=("merges", "lines", "text_bytes", "blob_unknown"),
        ),
    ),
    oracle=merges,
    rebuilt_at=(23, 25, 26),  # as languages (language_merge_lines), and file_merge_lines' code
)
"""Read by the files, hotspots, ownership and languages metrics; served by none of its own.
Merges are few, so the sink folds its deltas (no hand-tuned fold)."""
