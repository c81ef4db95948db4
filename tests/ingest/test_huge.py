"""Huge inputs, scaled down (bench/huge.py runs them full size): a commit editing every one of
5,000 files, a 4 MB blob edited in its middle and in many places, a file of one 1 MB line
edited; metre's events equal `git log --numstat --no-renames --minimal`."""

from __future__ import annotations

from pathlib import Path

from dulwich.repo import Repo

from metre.ingest.commits import commit_event
from metre.ingest.git.graph import new_commits
from metre.ingest.mirror import resolve_head
from testkit.huge import fat, long_line, wide
from tests.fixtures.gitrepo import git_numstat


def _equal_to_git(repo_dir: Path) -> list[int]:
    expected = git_numstat(repo_dir)
    files = []
    with Repo(str(repo_dir)) as repo:
        for sha in new_commits(repo, resolve_head(repo_dir / ".git", None), None):
            e = commit_event(repo, 1, sha)
            mine = sorted(
                (f.path.encode(), None if f.binary else f.added, None if f.binary else f.removed)
                for f in e.files
            )
            assert mine == sorted(expected[sha]), sha
            files.append(len(e.files))
    return files


def test_commit_editing_every_file(tmp_path: Path) -> None:
    assert _equal_to_git(wide(tmp_path / "wide", 5000)) == [5000, 5000, 1000]


def test_big_blob_edited(tmp_path: Path) -> None:
    repo = fat(tmp_path / "fat", 4)
    assert _equal_to_git(repo) == [1, 1, 1]
    rows = [r for rows in git_numstat(repo).values() for r in rows]
    assert sorted(r[1:] for r in rows) == [(70, 70), (1003, 3), (65536, 0)]


def test_one_line_file_edited(tmp_path: Path) -> None:
    repo = long_line(tmp_path / "line", 1)
    assert _equal_to_git(repo) == [1, 1, 1]
