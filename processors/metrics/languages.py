"""Lines by language, from file names, by GitHub Linguist's rules (pure).

The language of a path is what go-enry (a maintained Go port of Linguist, bound by
`enry-python`) says from the path alone (processors/metrics/linguist.py). As in GitHub's
language bar, only files of a programming or markup language count: vendored, generated,
documentation, lock and data/prose files (JSON, YAML, Markdown, ...) are left out, as are
paths enry does not recognise and binary changes. Net lines = added - removed.

Bytes at head follow GitHub's measure (the sizes of the counted blobs at head; Linguist gives a
binary blob no language): `text_bytes` sums the changes' blob measures
(metre.contracts.events.BlobDelta,
text bytes after minus before), binary changes included (a blob turning binary leaves the
sum), with `blob_unknown` counting changes whose event carried none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from metre.contracts.events import CommitEvent, FileChange
from metre.processors.metrics import Delta, Rows, bump
from metre.processors.metrics.linguist import MAPPING, OTHER, classify
from metre.processors.metrics.spec import MetricSpec, Route, Writer
from metre.processors.metrics.table import Column, MetricTable

TABLE = "language_lines"
__all__ = ["MAPPING", "OTHER", "counted_language", "language", "languages"]


def language(path: str) -> str:
    """The Linguist language of a repository path, from its path alone ("Other" if none)."""
    return classify(path).language


def counted_language(path: str) -> str | None:
    """The path's language if the language statistics count it, else None."""
    k = classify(path)
    return k.language if k.counted else None


def _row(f: FileChange) -> tuple[int, int, int, int, int, int]:
    """(changes, added, removed, binary changes, text bytes, unknown) of one file change of a
    counted path: a binary change counts in `binary_changes` and the bytes only (so every
    contribution shows in a counter, as retraction's clean-up of all-zero rows expects)."""
    text, unknown = (0, 1) if f.blob is None else (f.blob.text_bytes, 0)
    if f.binary:
        return (0, 0, 0, 1, text, unknown)
    return (1, f.added, f.removed, 0, text, unknown)


def languages(e: CommitEvent) -> Iterator[Delta]:
    """One `language_lines` row per (repo, language) of the commit's files."""
    rows: dict[str, list[int]] = {}
    for f in e.files:
        lang = counted_language(f.path)
        if lang is None:
            continue
        r = rows.setdefault(lang, [0, 0, 0, 0, 0, 0])
        for i, v in enumerate(_row(f)):
            r[i] += v
    for lang, (changes, added, removed, binary, text, unknown) in rows.items():
        yield Delta(
            TABLE,
            (e.repo_id, lang),
            {
                "changes": changes,
                "added": added,
                "removed": removed,
                "binary_changes": binary,
                "text_bytes": text,
                "blob_unknown": unknown,
            },
        )


def fold(e: CommitEvent, rows: Rows) -> None:
    """`languages`'s deltas merged straight into `rows` (one bump per counted file)."""
    table = rows[TABLE]
    rid = e.repo_id
    for f in e.files:
        lang = counted_language(f.path)
        if lang is not None:
            bump(table, (rid, lang), *_row(f))


async def read(store: Any, ids: list[int], p: Mapping[str, Any]) -> dict[str, Any]:
    from metre.processors import reads  # deferred: the reads import the store, which imports this

    return {"mapping": MAPPING, "languages": await reads.languages(store, ids)}


WRITER: Writer = Writer(
    "languages",
    tables=(
        MetricTable(
            TABLE,
            key=(Column("repo_id", "bigint"), Column("language", "text")),
            counters=(
                "changes", "added", "removed", "binary_changes", "text_bytes", "blob_unknown"
            ),
        ),
    ),
    oracle=languages,
    fold=fold,
    rebuilt_at=(23, 25, 26),  # Linguist's languages; binary changes and bytes; lines of code
)  # fmt: skip
SPEC: MetricSpec = MetricSpec(
    "languages",
    "Per language (GitHub Linguist's, by go-enry from the path; programming and markup "
    "languages only, vendored, generated, documentation and lock files and binary changes "
    "excluded): text file changes, lines added, removed, lines at head (added - removed, "
    "plus what merges decided themselves), and bytes at head (the sizes of the language's "
    "text blobs at head, GitHub's measure)",
    "lines, bytes",
    version=4,
    sources=(TABLE, "language_merge_lines"),
    org=True,
    writer=WRITER,
    route=Route(
        "Lines added, removed and net per language (from file names; binary files excluded)",
        read,
        response="LanguagesOut",
        org_summary="Lines by language over repositories",
    ),
)
