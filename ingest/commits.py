"""Commits of a local repository as `CommitEvent`s (reads an object store only).

What a commit's files are: exactly `git log --numstat --no-renames --minimal` for that commit.
Root commits are diffed against the empty tree; merge commits carry no files. Symlinks diff as
their target text, a submodule entry (gitlink) as the one line ``Subproject commit <sha>\\n``.
A path whose type changes (file, symlink, gitlink) is one "T" entry counted on those texts, and
a mode-only change counts 0 0 (or binary), as git prints them. Line counts come from
`kernels.numstat` (git's binary rule: a NUL among the first 8000 bytes).

Paths are bytes in git; events carry them in metre's path form (`metre.contracts.paths.path_text`:
UTF-8, a backslash doubled, other bytes as ``\\xNN``), one to one, so distinct byte paths stay
distinct.

The git reading is in `metre.ingest.git` (raw objects, tree diff, graph walks, merges).
"""

from __future__ import annotations

import binascii
from typing import Any

from metre import kernels
from metre.contracts.events import BlobDelta, ChangeType, CommitEvent, FileChange, MergeFile
from metre.contracts.paths import path_text
from metre.ingest.blobmeasures import measures
from metre.ingest.git.commit import decode, person
from metre.ingest.git.merges import merge_files
from metre.ingest.git.objects import (
    Entry,
    Reader,
    kind,
    reader,
)
from metre.ingest.git.treediff import Change, tree_changes
from metre.ingest.mailmap import Mailmap

__all__ = ["commit_event"]


def _path(change: Change) -> bytes:
    return change[0]


def _file_change(rd: Reader, path: bytes, o: Entry | None, n: Entry | None) -> FileChange:
    old = rd.content(o) if o else b""
    new = rd.content(n) if n else b""
    change: ChangeType
    if o is None:
        change = "A"
    elif n is None:
        change = "D"
    elif kind(o) != kind(n):
        change = "T"
    else:
        change = "M"
    counts = kernels.numstat(old, new)
    text = path_text(path)
    bo, bn = measures(text, o, old), measures(text, n, new)
    blob = BlobDelta(bn[0] - bo[0], bn[1] - bo[1], bn[2] - bo[2], bn[3] - bo[3])
    if counts is None:
        return FileChange(text, 0, 0, True, change, blob)
    return FileChange(text, counts[0], counts[1], False, change, blob)


def commit_event(repo: Any, repo_id: int, sha: str, mailmap: Mailmap | None = None) -> CommitEvent:
    """The event of commit `sha` (hex) of a dulwich repository; files sorted by raw path.
    Author and committer are mapped by `mailmap` (metre.ingest.mailmap: the head's .mailmap).

    Raises `RepositoryError` when an object is missing or unreadable.
    """
    rd = reader(repo)
    key = sha.encode("ascii")
    h = rd.header(key)
    author = person(h.author, h.encoding, mailmap)
    committer = person(h.committer, h.encoding, mailmap)
    summary = decode(h.message.split(b"\n", 1)[0], h.encoding)
    files: tuple[FileChange, ...] = ()
    merged: tuple[MergeFile, ...] = ()
    if len(h.parents) <= 1:
        old_tree = binascii.unhexlify(rd.node(h.parents[0]).tree) if h.parents else None
        changes = sorted(tree_changes(rd, old_tree, binascii.unhexlify(h.tree)), key=_path)
        files = tuple(_file_change(rd, p, o, n) for p, o, n in changes)
    else:
        merged = merge_files(repo, rd, key, h)
    return CommitEvent(
        repo_id=repo_id,
        sha=sha,
        parents=tuple(p.decode("ascii") for p in h.parents),
        author=author,
        committer=committer,
        summary=summary,
        files=files,
        merge_files=merged,
    )
