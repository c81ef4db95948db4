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


def test_polls_of_changing_trees_copy_every_new_object(tmp_path: Path) -> None:
    """Trees are walked as diffs against the first parent's: over polls that edit, delete,
    move, turn a directory into a file and back, add gitlinks and merge branches, the mirror
    ends each poll holding exactly the source's objects, and fsck finds nothing missing."""
    import random

    rng = random.Random(7)
    b = GitRepoBuilder(tmp_path / "src")
    for i in range(12):
        b.write(f"d{i % 3}/e{i % 2}/f{i}.txt", b"line %d\n" % i)
    b.commit("root", date="2021-01-01T00:00:00+0000")
    mirror = open_mirror(tmp_path / "m", 1, str(b.path))
    day = 2
    for poll in range(6):
        for step in range(rng.randint(1, 4)):
            op = rng.randrange(6)
            d, e, f = rng.randrange(3), rng.randrange(2), rng.randrange(12)
            if op != 1 and (b.path / f"d{d}").is_file():
                b.remove(f"d{d}")  # a file again: back to a directory below
            if op == 0 and (b.path / f"d{d}/e{e}").exists():
                b.remove(f"d{d}/e{e}")
            elif op == 1:
                if (b.path / f"d{d}").exists():
                    b.remove(f"d{d}")
                b.write(f"d{d}", b"now a file %d\n" % poll)
            elif op == 2:
                b.git("add", "-A")  # the index as the work tree before the entry is staged
                b.gitlink(f"d{d}/sub{poll}", "1" * 40)
            elif op == 3:
                side = f"side{poll}-{step}"
                b.branch(side)
                b.checkout(side)
                b.write(f"s{poll}/x{step}.txt", b"side %d\n" % poll)
                b.commit(f"side {poll}", date=f"2021-01-{day:02d}T00:00:00+0000")
                b.checkout("main")
                b.write(f"d{d}/m{poll}-{step}.txt", b"main %d\n" % poll)
                b.commit(f"main {poll}", date=f"2021-01-{day:02d}T01:00:00+0000")
                b.merge(side, date=f"2021-01-{day:02d}T01:30:00+0000")
            else:
                b.write(f"d{d}/e{e}/f{f}.txt", b"edit %d %d\n" % (poll, rng.randrange(99)))
            b.commit(f"poll {poll}", date=f"2021-01-{day:02d}T02:00:00+0000", allow_empty=True)
            day += 1
        open_mirror(tmp_path / "m", 1, str(b.path))
        assert resolve_head(mirror, None) == b.head()
        assert _objects(mirror) == _objects(b.path / ".git")
        run_git(mirror, "fsck", "--strict", "--no-dangling")
