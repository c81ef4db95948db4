"""The refs cache (`metre.ingest.refstore.RefCache`) against git's own view: after every change git
can make (update-ref, pack-refs, deletion, a ref renamed into place in the same clock tick), a
cached read equals `git for-each-ref`, and an unchanged repository is not read again; what git
never does (a file rewritten in place) is seen at the next full read."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from metre.ingest import refstore
from metre.ingest.refstore import RefCache, read_refs, write_packed_refs


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def git_refs(repo: Path) -> dict[bytes, bytes]:
    out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
    return {n.encode(): s.encode() for s, n in (line.split(" ", 1) for line in out.splitlines())}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    work = tmp_path / "w"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for i in range(6):
        (work / "f").write_text(f"{i}\n")
        git(work, "add", "f")
        git(work, "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qm", f"c{i}")
    git(work, "push", "-q", str(path), "main")
    return path


def commits(repo: Path) -> list[str]:
    return git(repo, "rev-list", "main").split()


def age(repo: Path, seconds: float = 60.0) -> None:
    """Every ref file and directory as if written `seconds` ago (out of the racy window)."""
    old = time.time() - seconds
    for root, dirs, files in os.walk(repo / "refs"):
        for name in [*dirs, *files]:
            os.utime(Path(root) / name, (old, old))
    os.utime(repo / "refs", (old, old))
    if (repo / "packed-refs").exists():
        os.utime(repo / "packed-refs", (old, old))


def test_random_changes_read_as_git_reads_them(repo: Path) -> None:
    rng = random.Random(7)
    shas = commits(repo)
    cache = RefCache()
    names = [f"refs/heads/b{i}" for i in range(5)] + [f"refs/tags/t/{i}" for i in range(5)]
    for step in range(120):
        op = rng.choice(["set", "set", "delete", "pack", "rename", "age"])
        name = rng.choice(names)
        if op == "set":
            git(repo, "update-ref", name, rng.choice(shas))
        elif op == "delete" and name.encode() in git_refs(repo):
            git(repo, "update-ref", "-d", name)
        elif op == "pack":
            git(repo, "pack-refs", "--all")
        elif op == "rename":  # as git writes a ref (lock file renamed), in the same tick
            loose = repo / name
            if loose.is_file():
                lock = loose.with_name(loose.name + ".lock")
                lock.write_text(rng.choice(shas) + "\n")
                os.replace(lock, loose)
        elif op == "age":
            age(repo)
        refs, symrefs = read_refs(repo, cache=cache)
        refs.pop(b"HEAD", None)
        assert refs == git_refs(repo), f"step {step}: {op} {name}"
        assert symrefs == {b"HEAD": b"refs/heads/main"}


def test_an_unchanged_repository_is_not_read_again(repo: Path) -> None:
    git(repo, "tag", "v1", "main~2")
    git(repo, "pack-refs", "--all")
    git(repo, "update-ref", "refs/heads/loose", "main~1")
    age(repo)
    cache = RefCache()
    first = read_refs(repo, cache=cache)
    assert cache.reads == 2  # packed-refs and the one loose ref
    assert read_refs(repo, cache=cache) == first
    assert cache.reads == 2
    git(repo, "update-ref", "refs/heads/loose", "main")  # a new file (renamed into place)
    refs, _ = read_refs(repo, cache=cache)
    assert refs[b"refs/heads/loose"] == git_refs(repo)[b"refs/heads/loose"]
    assert cache.reads == 3  # that ref alone


def test_a_change_the_stat_cannot_show_is_seen_at_verification(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten in place with its old size and mtime put back (nothing git does) is
    seen when the repository is read in full, `VERIFY_AFTER` seconds on."""
    git(repo, "pack-refs", "--all")
    age(repo)
    cache = RefCache()
    before, _ = read_refs(repo, cache=cache)
    packed = repo / "packed-refs"
    stat = packed.stat()
    other = commits(repo)[3]
    packed.write_bytes(packed.read_bytes().replace(before[b"refs/heads/main"], other.encode()))
    os.utime(packed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert read_refs(repo, cache=cache)[0] == before  # the stat is the same: trusted
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + refstore.VERIFY_AFTER + 1)  # its clock
    assert read_refs(repo, cache=cache)[0][b"refs/heads/main"] == other.encode()


def test_a_change_in_the_same_clock_tick_is_seen(repo: Path) -> None:
    """A ref renamed into place in the tick of the last read leaves its directory's stat as it
    was (timestamps are coarse): a stat that recent is not trusted."""
    git(repo, "update-ref", "refs/heads/side", "main~1")
    cache = RefCache()
    heads = repo / "refs" / "heads"
    before = heads.stat()
    assert read_refs(repo, cache=cache)[0][b"refs/heads/side"] == git_refs(repo)[b"refs/heads/side"]
    lock = heads / "side.lock"
    lock.write_text(commits(repo)[4] + "\n")
    os.replace(lock, heads / "side")
    os.utime(heads, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same tick
    assert read_refs(repo, cache=cache)[0][b"refs/heads/side"] == commits(repo)[4].encode()


def test_a_loose_ref_rewritten_in_place_is_seen_at_verification(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(repo, "update-ref", "refs/heads/side", "main~1")
    age(repo)
    cache = RefCache()
    assert read_refs(repo, cache=cache)[0][b"refs/heads/side"] == git_refs(repo)[b"refs/heads/side"]
    (repo / "refs/heads/side").write_text(commits(repo)[4] + "\n")  # its directory unchanged
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + refstore.VERIFY_AFTER + 1)  # its clock
    assert read_refs(repo, cache=cache)[0][b"refs/heads/side"] == commits(repo)[4].encode()


def test_written_refs_are_compared_not_parsed_and_bad_names_stay_out(repo: Path) -> None:
    cache = RefCache()
    shas = commits(repo)
    refs, _ = read_refs(repo, cache=cache)
    refs.pop(b"HEAD")
    refs[b"refs/tags/v2"] = shas[1].encode()
    refs[b"refs/tags/bad..name"] = shas[2].encode()  # a hostile remote's name
    write_packed_refs(repo, refs, [b"refs/heads/main"], cache=cache)
    reads = cache.reads
    got, _ = read_refs(repo, cache=cache)
    assert cache.reads == reads + 1  # the bytes, compared with what was written
    got.pop(b"HEAD")
    assert got == {n: s for n, s in refs.items() if n != b"refs/tags/bad..name"}
    assert got == git_refs(repo)


def test_worktrees_keep_their_own_head(tmp_path: Path, repo: Path) -> None:
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    git(work, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"), "HEAD~2")
    side_gitdir = Path(git(tmp_path / "side", "rev-parse", "--absolute-git-dir").strip())
    common = work / ".git"
    cache = RefCache()
    main_refs, main_sym = read_refs(common, cache=cache)
    side_refs, side_sym = read_refs(side_gitdir, common, cache=cache)
    assert main_sym[b"HEAD"] == b"refs/heads/main"
    assert side_sym[b"HEAD"] == b"refs/heads/side"
    assert side_refs[b"HEAD"] != main_refs[b"HEAD"]
    assert read_refs(common, cache=cache)[1][b"HEAD"] == b"refs/heads/main"


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    cache = RefCache(max_refs=3)
    for i in range(8):
        path = tmp_path / f"r{i}.git"
        subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
        read_refs(path, cache=cache)
    assert len(cache) < 8
    assert len(cache) >= 1


def test_returned_dicts_are_the_callers(repo: Path) -> None:
    cache = RefCache()
    age(repo)
    refs, symrefs = read_refs(repo, cache=cache)
    refs.clear()
    symrefs.clear()
    again, again_sym = read_refs(repo, cache=cache)
    assert again[b"refs/heads/main"]
    assert again_sym == {b"HEAD": b"refs/heads/main"}
