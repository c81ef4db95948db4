"""metre.ingest.commits against the git CLI: files, counts, change letters, people, times,
parents."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dulwich.repo import Repo

from metre.contracts.events import CommitEvent
from metre.ingest.commits import commit_event
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.graph import new_commits
from tests.fixtures.gitrepo import (
    GitRepoBuilder,
    git_change_letters,
    git_commits,
    git_numstat,
    run_git,
    served_path,
)

Row = tuple[str, int | None, int | None]


def _path(raw: bytes) -> str:
    return served_path(raw)


def _rows(e: CommitEvent) -> Counter[Row]:
    return Counter(
        (f.path, None, None) if f.binary else (f.path, f.added, f.removed) for f in e.files
    )


@pytest.fixture(scope="module")
def awkward_events(awkward_repo: Path) -> Iterator[dict[str, CommitEvent]]:
    with Repo(str(awkward_repo)) as repo:
        shas = new_commits(repo, repo.head().decode(), None)
        yield {s: commit_event(repo, 7, s) for s in shas}


@pytest.fixture(scope="module")
def random_events(random_repo: Path) -> Iterator[dict[str, CommitEvent]]:
    with Repo(str(random_repo)) as repo:
        shas = new_commits(repo, repo.head().decode(), None)
        yield {s: commit_event(repo, 8, s) for s in shas}


@pytest.mark.parametrize("which", ["awkward", "random"])
def test_files_equal_git_numstat(
    which: str,
    awkward_repo: Path,
    random_repo: Path,
    awkward_events: dict[str, CommitEvent],
    random_events: dict[str, CommitEvent],
) -> None:
    repo, events = (
        (awkward_repo, awkward_events) if which == "awkward" else (random_repo, random_events)
    )
    oracle = git_numstat(repo)
    assert set(events) == set(oracle)
    wrong = {}
    for sha, rows in oracle.items():
        expected = Counter((_path(p), a, r) for p, a, r in rows)
        got = _rows(events[sha])
        if got != expected:
            wrong[sha] = (got - expected, expected - got)
    assert wrong == {}
    assert sum(len(e.files) for e in events.values()) > 40


@pytest.mark.parametrize("which", ["awkward", "random"])
def test_change_letters_equal_git_raw(
    which: str,
    awkward_repo: Path,
    random_repo: Path,
    awkward_events: dict[str, CommitEvent],
    random_events: dict[str, CommitEvent],
) -> None:
    repo, events = (
        (awkward_repo, awkward_events) if which == "awkward" else (random_repo, random_events)
    )
    for sha, rows in git_change_letters(repo).items():
        expected = Counter((_path(p), letter) for p, letter in rows)
        assert Counter((f.path, f.change) for f in events[sha].files) == expected, sha


@pytest.mark.parametrize("which", ["awkward", "random"])
def test_people_times_parents_equal_git_log(
    which: str,
    awkward_repo: Path,
    random_repo: Path,
    awkward_events: dict[str, CommitEvent],
    random_events: dict[str, CommitEvent],
) -> None:
    repo, events = (
        (awkward_repo, awkward_events) if which == "awkward" else (random_repo, random_events)
    )
    for sha, c in git_commits(repo).items():
        e = events[sha]
        assert e.sha == sha
        assert e.parents == c.parents
        assert e.is_merge == (len(c.parents) > 1)
        if e.is_merge:
            assert e.files == ()
        assert e.summary == c.summary
        for person, name, email, when in (
            (e.author, c.author_name, c.author_email, c.author_time),
            (e.committer, c.committer_name, c.committer_email, c.committer_time),
        ):
            assert person.name == name
            assert person.email == email.lower()
            assert person.time == when
            assert person.time.utcoffset() == when.utcoffset()


def test_awkward_cases_are_really_there(awkward_events: dict[str, CommitEvent]) -> None:
    """Guards the fixture: the awkward cases the other tests rely on are present and decoded."""
    by_summary = {e.summary: e for e in awkward_events.values()}
    latin = by_summary["Commit by J\u00f6rg (latin-1)"]
    assert latin.author.name == "J\u00f6rg M\u00fcller"
    assert latin.author.email == "joerg@example.org"
    bad = by_summary["Invalid UTF-8 name, no encoding header"]
    assert bad.author.name == "Bad \ufffd\ufffd Name \ufffd"
    assert by_summary["Latin-1 name, no encoding header"].author.name == "Bad \xff\xfe Name \xc3"
    odd = by_summary["Hand-made commit with -0000 and +9959"]
    assert odd.author.time.utcoffset() == timedelta(0)
    assert odd.committer.time.utcoffset() == timedelta(0)  # +9959 does not fit a datetime
    root = by_summary["Root commit"]
    assert root.author.time.utcoffset() == timedelta(hours=14)
    assert root.parents == ()
    assert {f.path for f in root.files if f.binary} == {"bin1.dat"}
    assert {f.path: f.added for f in root.files}["late_nul.txt"] == 901  # NUL after byte 8000
    edit = by_summary["Edit big files"]
    assert edit.author.time.utcoffset() == -timedelta(hours=12)
    assert edit.committer.time.utcoffset() == timedelta(hours=5, minutes=45)
    names = {f.path for f in by_summary["Odd file names"].files}
    assert "caf\\xe9.txt" in names
    assert "na\u00efve/\u00fc.txt" in names
    assert "we\\xffird\tname\n.txt" in names
    changes = {f.path: f for f in by_summary["Exec bit only; binary edit"].files}
    assert (changes["script.sh"].added, changes["script.sh"].removed) == (0, 0)
    sub = {f.path: f for f in by_summary["Submodule to file"].files}["sub2"]
    assert (sub.change, sub.added, sub.removed) == ("T", 2, 1)
    merges = [e for e in awkward_events.values() if e.is_merge]
    assert sorted(len(e.parents) for e in merges) == [2, 4]
    assert all(e.files == () for e in merges)
    assert by_summary["An empty commit"].files == ()


def _rev_list(repo: Path, head: str, known: str | None) -> list[str]:
    args = ["rev-list", head] + ([f"^{known}"] if known else [])
    return run_git(repo, *args).decode().split()


def _assert_topological(order: list[str], repo: Path) -> None:
    position = {s: i for i, s in enumerate(order)}
    commits = git_commits(repo, order[-1]) if order else {}
    for sha in order:
        for p in commits[sha].parents:
            if p in position:
                assert position[p] < position[sha], (p, sha)


def test_new_commits_full_history_is_topological(random_repo: Path) -> None:
    with Repo(str(random_repo)) as repo:
        head = repo.head().decode()
        order = new_commits(repo, head, None)
        assert order == new_commits(repo, head, None)  # deterministic
    assert sorted(order) == sorted(_rev_list(random_repo, head, None))
    assert len(order) == len(set(order))
    assert order[-1] == head
    _assert_topological(order, random_repo)


def test_new_commits_between_revisions_equal_rev_list(random_repo: Path) -> None:
    log = list(git_commits(random_repo))  # newest first, along first parents and merges
    pairs = [(log[0], log[5]), (log[0], log[40]), (log[10], log[200]), (log[3], log[3])]
    pairs += [(log[100], log[0])]  # an older head than the known one: nothing new
    side = run_git(random_repo, "for-each-ref", "--format=%(objectname)", "refs/heads/")
    for tip in side.decode().split()[:3]:
        pairs += [(tip, log[0]), (log[0], tip)]
    with Repo(str(random_repo)) as repo:
        for head, known in pairs:
            got = new_commits(repo, head, known)
            assert sorted(got) == sorted(_rev_list(random_repo, head, known)), (head, known)
            _assert_topological(got, random_repo)


def test_new_commits_survives_clock_skew(tmp_path: Path) -> None:
    """Commits dated before their parents: nothing new is lost (extra known ones are allowed)."""
    b = GitRepoBuilder(tmp_path / "skew")
    dates = ["2021-01-10T00:00:00+0000", "2021-01-01T00:00:00+0000", "2019-06-01T00:00:00+0000"]
    shas = []
    for i, d in enumerate(dates * 3):
        b.write("f.txt", f"{i}\n".encode())
        shas.append(b.commit(f"c{i}", date=d))
    with Repo(str(b.path)) as repo:
        for k in range(len(shas)):
            got = new_commits(repo, shas[-1], shas[k])
            expected = set(_rev_list(b.path, shas[-1], shas[k]))
            assert expected <= set(got)
            assert shas[k] not in got


def test_unknown_commit_is_a_repository_error(awkward_repo: Path) -> None:
    with Repo(str(awkward_repo)) as repo:
        head = repo.head().decode()
        with pytest.raises(RepositoryError, match="missing"):
            commit_event(repo, 1, "0" * 40)
        with pytest.raises(RepositoryError, match="missing"):
            new_commits(repo, head, "1" * 40)


def test_corrupt_blob_is_a_repository_error(tmp_path: Path) -> None:
    src = GitRepoBuilder(tmp_path / "src")
    src.write("a.txt", b"one\n")
    src.commit("one")
    src.write("a.txt", b"two\n")
    sha = src.commit("two")
    blob = run_git(src.path, "rev-parse", "HEAD:a.txt").decode().strip()
    loose = src.path / ".git" / "objects" / blob[:2] / blob[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"not zlib at all")
    with Repo(str(src.path)) as repo, pytest.raises(RepositoryError, match="cannot be read"):
        commit_event(repo, 1, sha)
    shutil.rmtree(src.path / ".git" / "objects" / blob[:2])
    with Repo(str(src.path)) as repo, pytest.raises(RepositoryError, match="missing"):
        commit_event(repo, 1, sha)
