"""Lines by language, from file names (pure).

The language of a path is the name of the Pygments lexer its file name selects
(`pygments.lexers.find_lexer_class_for_filename`, which ranks candidate lexers by priority
without reading content), or "Other". Pygments is BSD-2-Clause licensed, compatible with
Apache-2.0, and its filename patterns are a large, maintained mapping. Lookups are cached per
file name. Binary files are left out; net lines = added - removed.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterator
from importlib import metadata

from pygments.lexers import find_lexer_class_for_filename
from pygments.util import ClassNotFound

from ingest.events import CommitEvent
from processors.metrics import Delta, Rows, bump
from processors.metrics.catalogue import Entry
from processors.metrics.table import Column, MetricTable

TABLE = "language_lines"
OTHER = "Other"
MAPPING = f"pygments {metadata.version('pygments')}"
"""Which mapping decided the languages (the result can change with the Pygments version)."""


@functools.lru_cache(maxsize=65536)
def _by_name(name: str) -> str:
    try:
        cls = find_lexer_class_for_filename(name)
    except ClassNotFound:  # pragma: no cover - returns None in current Pygments
        cls = None
    return OTHER if cls is None else str(cls.name)


def language(path: str) -> str:
    """The language of a repository path, from its file name alone."""
    return _by_name(posixpath.basename(path))


def languages(e: CommitEvent) -> Iterator[Delta]:
    """One `language_lines` row per (repo, language) of the commit's text files."""
    rows: dict[str, list[int]] = {}
    for f in e.files:
        if f.binary:
            continue
        r = rows.setdefault(language(f.path), [0, 0, 0])
        r[0] += 1
        r[1] += f.added
        r[2] += f.removed
    for lang, (changes, added, removed) in rows.items():
        yield Delta(
            TABLE, (e.repo_id, lang), {"changes": changes, "added": added, "removed": removed}
        )


def fold(e: CommitEvent, rows: Rows) -> None:
    """`languages`'s deltas merged straight into `rows` (one bump per text file)."""
    table = rows[TABLE]
    rid = e.repo_id
    for f in e.files:
        if not f.binary:
            bump(table, (rid, language(f.path)), 1, f.added, f.removed)


METRICS = (languages,)
FOLD = fold
TABLES = (
    MetricTable(
        TABLE,
        key=(Column("repo_id", "bigint"), Column("language", "text")),
        counters=("changes", "added", "removed"),
    ),
)
ENTRIES = (
    Entry(
        "languages",
        "Per language (Pygments lexer chosen by file name; binary files excluded): text file "
        "changes, lines added, removed, and lines at head (added - removed, plus what merges "
        "decided themselves)",
        "lines",
        version=2,
        tables=(TABLE, "language_merge_lines"),
        org=True,
    ),
)
