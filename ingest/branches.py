"""The branches a repository has, read from disk (I/O, never the network): a local source
repository itself, or metre's mirror of a remote as of its last poll."""

from __future__ import annotations

from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from metre.ingest.refstore import read_refs

__all__ = ["branch_names"]

_HEADS = b"refs/heads/"


def branch_names(path: Path) -> set[bytes] | None:
    """The short names of the branches (``refs/heads/*``) of the repository at `path`, bare or
    not; None when there is no readable repository there."""
    try:
        with Repo(str(path)) as repo:
            refs, _ = read_refs(Path(repo.controldir()), Path(repo.commondir()))
    except (NotGitRepository, OSError, ValueError):
        return None
    return {name.removeprefix(_HEADS) for name in refs if name.startswith(_HEADS)}
