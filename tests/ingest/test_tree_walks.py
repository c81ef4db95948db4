"""What the fast paths of metre.ingest.commits must not change: trees whose entries are out of git's
order (a broken tool wrote them) are still diffed by name, a damaged tree is a repository
error, and merge bases equal dulwich's own search on every merge of generated histories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dulwich import graph
from dulwich.repo import Repo

from metre.ingest.commits import commit_event
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.graph import lowest_common_ancestors
from metre.ingest.git.objects import reader
from tests.fixtures.gitrepo import GitRepoBuilder, run_git


def _entry(mode: bytes, name: bytes, hex_sha: bytes) -> bytes:
    return mode + b" " + name + b"\0" + bytes.fromhex(hex_sha.decode())


def _blob(repo: Path, data: bytes) -> bytes:
    return run_git(repo, "hash-object", "-w", "--stdin", stdin=data).strip()


def _commit_tree(repo: Path, body: bytes, parent: str) -> str:
    tree = run_git(repo, "hash-object", "-t", "tree", "--literally", "-w", "--stdin", stdin=body)
    out = run_git(repo, "commit-tree", tree.strip().decode(), "-p", parent, "-m", "hand-made")
    return out.strip().decode()


def test_unsorted_tree_is_diffed_by_name(tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "repo")
    b.write("a.txt", b"one\n")
    b.write("b.txt", b"x\ny\n")
    b.write("d/f.txt", b"inside\n")
    b.commit("sorted")
    repo = tmp_path / "repo"
    head = run_git(repo, "rev-parse", "HEAD").strip().decode()
    sub = run_git(repo, "rev-parse", "HEAD:d").strip()
    # b.txt before a.txt, and the directory "d" before both: out of git's order
    body = (
        _entry(b"40000", b"d", sub)
        + _entry(b"100644", b"b.txt", _blob(repo, b"x\ny\nz\n"))
        + _entry(b"100644", b"a.txt", _blob(repo, b"one\n"))
        + _entry(b"100644", b"c.txt", _blob(repo, b"new\n"))
    )
    sha = _commit_tree(repo, body, head)
    with Repo(str(repo)) as r:
        event = commit_event(r, 1, sha)
    assert [(f.path, f.added, f.removed, f.change) for f in event.files] == [
        ("b.txt", 1, 0, "M"),
        ("c.txt", 1, 0, "A"),
    ]


def test_damaged_tree_is_a_repository_error(tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "repo")
    b.write("a.txt", b"one\n")
    b.commit("first")
    repo = tmp_path / "repo"
    head = run_git(repo, "rev-parse", "HEAD").strip().decode()
    sha = _commit_tree(repo, b"100644 a.txt\0\x01\x02", head)  # the entry's sha is cut short
    with Repo(str(repo)) as r, pytest.raises(RepositoryError, match="corrupt"):
        commit_event(r, 1, sha)


@pytest.mark.parametrize(("commits", "seed"), [(300, 0), (400, 3), (400, 11)])
def test_merge_bases_equal_dulwich(
    history_factory: Callable[..., Path], commits: int, seed: int
) -> None:
    find_lcas = getattr(graph, "_find_lcas", None)
    if find_lcas is None:
        pytest.skip("this dulwich has no _find_lcas")
    repo = history_factory(commits, seed)
    revs = run_git(repo, "rev-list", "--all", "--min-parents=2").decode().split()
    assert revs, "the generated history has merges"
    with Repo(str(repo)) as r:
        rd = reader(r)
        for rev in revs:
            first, *others = rd.node(rev.encode()).parents
            mine = lowest_common_ancestors(rd.node, first, others)
            theirs = find_lcas(
                lambda c: list(rd.node(c).parents), first, others, lambda c: rd.node(c).time
            )
            assert mine == theirs, rev


def test_merge_of_unrelated_histories(tmp_path: Path) -> None:
    """Two roots with a file in common: the merge's weights do not sum to zero, and a path the
    same in every tree still needs the merge's correction (its two adds are counted once)."""
    from tests.ingest.test_merge_files import check_every_commit

    b = GitRepoBuilder(tmp_path / "repo")
    b.write("README", b"same\ntext\n")
    b.write("a.txt", b"a\n")
    b.commit("first root")
    b.git("checkout", "-q", "--orphan", "other")
    b.git("rm", "-q", "-r", "--cached", ".")
    (tmp_path / "repo" / "a.txt").unlink()
    b.write("b.txt", b"b\nb\n")
    b.commit("second root")
    b.checkout("main")
    b.git("merge", "-q", "--no-edit", "--allow-unrelated-histories", "other")
    assert check_every_commit(tmp_path / "repo") == 1
