"""The branches a repository has, read from disk (I/O, never the network): a local source
repository itself, or metre's mirror of a remote as of its last poll."""

from __future__ import annotations

from pathlib import Path

from metre.ingest.git.repodir import control_dirs
from metre.ingest.refstore import read_refs

__all__ = ["branch_names"]

_HEADS = b"refs/heads/"


def branch_names(path: Path) -> set[bytes] | None:
    """The short names of the branches (``refs/heads/*``) of the repository at `path`, bare or
    not; None when there is no readable repository there."""
    dirs = control_dirs(str(path))
    if dirs is None:
        return None
    try:
        refs, _ = read_refs(*dirs)
    except (OSError, ValueError):
        return None
    return {name.removeprefix(_HEADS) for name in refs if name.startswith(_HEADS)}
