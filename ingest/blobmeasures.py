"""What metre measures of the blob at a path: size, binary, text size, lines of code (pure).

Why here: a commit's files and a merge's own files carry the same measures, taken the same way.
The measures of a blob at a path are kept for a while (`KEPT`): a change's old side was the new
side of an earlier change, so a backfill or a poll would otherwise count each blob's code lines
twice.
"""

from __future__ import annotations

from metre import kernels
from metre.ingest.codelines import code_lines
from metre.ingest.git.objects import Entry, is_gitlink, kind

__all__ = ["NO_BLOB", "Measures", "forget_measures", "measures"]

Measures = tuple[int, int, int, int]
NO_BLOB: Measures = (0, 0, 0, 0)
_S_IFLNK = 0o120000
KEPT = 32_768
"""Measures kept, by path and entry (oldest first out): about 15 MB when full (tracemalloc,
paths of 25 characters)."""
_kept: dict[tuple[str, Entry], Measures] = {}


def measures(path: str, entry: Entry | None, content: bytes) -> Measures:
    """(bytes, binary, text bytes, lines of code) of the blob at an entry of `path` (path
    form 2; `content`: what `Reader.content` read for it). A submodule entry has no blob in
    this repository (`git ls-tree -l` shows no size): all zero, like an absent path. A symlink's
    blob is its target, which holds no code."""
    if entry is None or is_gitlink(entry):
        return NO_BLOB
    key = (path, entry)  # the entry's sha names the content; its mode says symlink or not
    found = _kept.get(key)
    if found is not None:
        return found
    if kernels.is_binary(content):
        found = (len(content), 1, 0, 0)
    else:
        code = 0 if kind(entry) == _S_IFLNK else code_lines(path, content)
        found = (len(content), 0, len(content), code)
    if len(_kept) >= KEPT:
        _kept.pop(next(iter(_kept)), None)
    _kept[key] = found
    return found


def forget_measures() -> None:
    """Drop every kept measure (benchmarks: a run must not find what an earlier run counted)."""
    _kept.clear()
