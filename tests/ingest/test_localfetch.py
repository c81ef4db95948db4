"""Local fetches copy only what is new, and refuse a damaged object by name (git oracle)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from metre.ingest.git.errors import RepositoryError
from metre.ingest.mirror import open_mirror, resolve_head
from tests.fixtures.gitrepo import GitRepoBuilder, run_git


def _objects(repo: Path) -> set[str]:
    out = run_git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return set(out.decode().split())


def test_a_poll_copies_exactly_the_new_objects(tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "src")
    for i in range(30):
        b.write(f"d{i % 3}/f{i}.txt", b"line %d\n" % i)
        b.commit(f"c{i}", date=f"2021-01-{i % 28 + 1:02d}T00:00:00+0000")
    b.git("repack", "-a", "-d", "-q")
    mirror = open_mirror(tmp_path / "m", 1, str(b.path))
    before = _objects(mirror)
    b.write("d1/f4.txt", b"changed\n")
    head = b.commit("new", date="2021-02-01T00:00:00+0000")
    open_mirror(tmp_path / "m", 1, str(b.path))
    assert resolve_head(mirror, None) == head
    # the commit, the root tree, d1's tree and the blob: nothing else travelled
    assert len(_objects(mirror) - before) == 4
    assert _objects(mirror) == _objects(b.path / ".git")
    run_git(mirror, "fsck", "--strict", "--no-dangling")


def test_an_object_that_does_not_hash_to_its_name_is_refused_by_name(tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "src")
    b.write("a.txt", b"one\n")
    b.commit("first", date="2021-01-01T00:00:00+0000")
    mirror = open_mirror(tmp_path / "m", 1, str(b.path))
    old = resolve_head(mirror, None)
    b.write("b.txt", b"the real content\n")
    b.commit("second", date="2021-01-02T00:00:00+0000")
    blob = b.git("rev-parse", "HEAD:b.txt").decode().strip()
    loose = b.path / ".git" / "objects" / blob[:2] / blob[2:]
    good = loose.read_bytes()
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob 6\0forged"))  # well-formed, another content
    with pytest.raises(RepositoryError, match=f"corrupt or unreadable.*{blob}"):
        open_mirror(tmp_path / "m", 1, str(b.path))
    assert resolve_head(mirror, None) == old  # nothing changed
    assert not [p for p in (mirror / "objects" / "pack").iterdir() if p.name.startswith("tmp")]
    loose.write_bytes(good)  # repaired: the next poll fetches it
    open_mirror(tmp_path / "m", 1, str(b.path))
    assert resolve_head(mirror, None) == b.head()
    run_git(mirror, "fsck", "--strict", "--no-dangling")


def test_small_packs_are_merged_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import metre.ingest.localfetch

    monkeypatch.setattr(metre.ingest.localfetch, "MAX_PACKS", 3)
    b = GitRepoBuilder(tmp_path / "src")
    b.write("a.txt", b"0\n")
    b.commit("c0", date="2021-01-01T00:00:00+0000")
    mirror = open_mirror(tmp_path / "m", 1, str(b.path))
    counts = []
    for i in range(1, 9):
        b.write("a.txt", b"%d\n" % i)
        b.commit(f"c{i}", date=f"2021-01-{i + 1:02d}T00:00:00+0000")
        open_mirror(tmp_path / "m", 1, str(b.path))
        counts.append(len(list((mirror / "objects" / "pack").glob("*.pack"))))
        assert resolve_head(mirror, None) == b.head()
    assert max(counts) <= 4  # never more than the limit and the pack a poll just added
    assert 1 in counts  # merged at least once
    assert _objects(mirror) == _objects(b.path / ".git")
    run_git(mirror, "fsck", "--strict", "--no-dangling")
