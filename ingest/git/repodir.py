"""Where a repository on this machine keeps its git data (I/O: reads a few of its files).

dulwich is imported when a repository is opened, not with this module: the API validates
local paths and lists branches with it, and importing the API must not load dulwich.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["control_dirs"]


def control_dirs(path: str) -> tuple[Path, Path] | None:
    """(control directory, common directory) of the repository at `path`, bare or not (a
    work tree's ``.git`` directory or ``gitdir:`` file followed, as dulwich's `Repo` opens it);
    None when there is no readable repository there."""
    from dulwich.errors import FileFormatException, NotGitRepository
    from dulwich.repo import Repo

    try:
        with Repo(path) as repo:
            return Path(repo.controldir()), Path(repo.commondir())
    except (NotGitRepository, OSError, ValueError, KeyError, FileFormatException):
        return None
