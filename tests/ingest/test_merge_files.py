"""Merges' own contribution (`merge_files`) against the git CLI: for every commit C of a
repository, the non-merge commits' numstat (added - removed; +1 per add, -1 per delete) plus
the merges' `merge_files`, summed over C and all its ancestors, equal C's tree per `git ls-tree`
and `git cat-file` (presence of every path; git's line count of every never-binary path), and
their `blob` measures sum to every path's blob per `git ls-tree -l` and `git cat-file` (size,
binary by git's rule, size of a text blob; lines of code per Pygments' lexers,
tests/codeoracle.py), whatever the path's history."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from dulwich.repo import Repo

from metre.contracts.events import CommitEvent, decode, encode
from metre.ingest.commits import commit_event
from metre.ingest.git.graph import new_commits
from tests.codeoracle import oracle_code_lines
from tests.fixtures.gitrepo import GitRepoBuilder, run_git, served_path


@lru_cache(maxsize=16384)
def git_blob(repo: Path, obj: bytes) -> bytes:
    """What `git cat-file blob` prints for `obj`, remembered: every commit is checked and most
    of its blobs are its parent's, and an object name stands for one content."""
    return run_git(repo, "cat-file", "blob", obj.decode())


def git_tree(repo: Path, rev: str) -> dict[str, int | None]:
    """Path -> git's line count at `rev` (None: binary); gitlinks count one line."""
    out: dict[str, int | None] = {}
    for entry in run_git(repo, "ls-tree", "-r", "-z", rev).split(b"\0"):
        if not entry:
            continue
        meta, raw = entry.split(b"\t", 1)
        _mode, kind, obj = meta.split()
        path = served_path(raw)
        if kind == b"commit":
            out[path] = 1
            continue
        data = git_blob(repo, obj)
        binary = b"\0" in data[:8000]
        out[path] = (
            None if binary else data.count(b"\n") + (not data.endswith(b"\n") and data != b"")
        )
    return out


Blob = tuple[int, int, int, int | None]


def git_blobs(repo: Path, rev: str) -> dict[str, Blob]:
    """Path -> (bytes, binary, text bytes, code lines) at `rev`: the size `git ls-tree -l`
    prints (none for a submodule: 0), 1 when `git cat-file` shows a NUL in the first 8000
    bytes, the size again when it does not, and Pygments' count of code lines of a text blob
    (0 for a binary blob, a symlink or a submodule; None: a language the oracle has no lexer
    for, not compared)."""
    out: dict[str, Blob] = {}
    for entry in run_git(repo, "ls-tree", "-r", "-l", "-z", rev).split(b"\0"):
        if not entry:
            continue
        meta, raw = entry.split(b"\t", 1)
        mode, kind, obj, size = meta.split()
        path = served_path(raw)
        if kind == b"commit":
            out[path] = (0, 0, 0, 0)
            continue
        data = git_blob(repo, obj)
        assert len(data) == int(size)
        binary = b"\0" in data[:8000]
        code = 0 if binary or mode == b"120000" else oracle_code_lines(path, data)
        out[path] = (int(size), int(binary), 0 if binary else int(size), code)
    return out


def summed_blobs(events: list[CommitEvent]) -> dict[str, tuple[int, int, int, int]]:
    """Path -> the sums of the files' and merge files' `blob` measures."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for e in events:
        for b in [f for f in e.files] + [m for m in e.merge_files]:
            assert b.blob is not None, (e.sha, b.path)
            assert b.blob.code is not None, (e.sha, b.path)
            old = out.get(b.path, (0, 0, 0, 0))
            out[b.path] = (
                old[0] + b.blob.bytes,
                old[1] + b.blob.binary,
                old[2] + b.blob.text_bytes,
                old[3] + b.blob.code,
            )
    return out


def summed(events: list[CommitEvent]) -> tuple[dict[str, int], dict[str, int], set[str]]:
    lines: dict[str, int] = {}
    presence: dict[str, int] = {}
    binary: set[str] = set()
    for e in events:
        for f in e.files:
            lines[f.path] = lines.get(f.path, 0) + f.added - f.removed
            presence[f.path] = presence.get(f.path, 0) + {"A": 1, "D": -1}.get(f.change, 0)
            if f.binary:
                binary.add(f.path)
        for m in e.merge_files:
            lines[m.path] = lines.get(m.path, 0) + m.lines
            presence[m.path] = presence.get(m.path, 0) + m.presence
    return lines, presence, binary


def check_every_commit(repo: Path) -> int:
    """Assert the sums for every commit of every branch; return the merges with merge_files."""
    revs = run_git(repo, "rev-list", "--all").decode().split()
    with Repo(str(repo)) as r:
        events = {}
        for s in new_commits(r, revs[0], None) + revs:
            if s not in events:
                events[s] = decode(encode(commit_event(r, 1, s)))
        for rev in revs:
            ancestry = [events[s] for s in new_commits(r, rev, None)]
            lines, presence, binary = summed(ancestry)
            tree = git_tree(repo, rev)
            for p in set(presence) | set(tree):
                assert presence.get(p, 0) == int(p in tree), (rev, p)
                if p in tree and p not in binary and tree[p] is not None:
                    assert lines.get(p, 0) == tree[p], (rev, p)
            blobs, sums = git_blobs(repo, rev), summed_blobs(ancestry)
            for p in set(blobs) | set(sums):
                want, got = blobs.get(p, (0, 0, 0, 0)), sums.get(p, (0, 0, 0, 0))
                assert got[:3] == want[:3], (rev, p)
                if want[3] is not None:
                    assert got[3] == want[3], (rev, p, got[3], want[3])
    return sum(1 for e in events.values() if e.merge_files)


def test_awkward_repo(awkward_repo: Path) -> None:
    assert check_every_commit(awkward_repo) == 1  # the hand-resolved conflict


@pytest.mark.parametrize("seed", [0, 3])
def test_generated_history(tmp_path: Path, seed: int) -> None:
    from tests.fixtures.gitrepo import generate_history

    assert check_every_commit(generate_history(tmp_path / "g", 150, seed)) > 0


def test_merges_that_decide(tmp_path: Path) -> None:
    assert check_every_commit(build_deciding_merges(tmp_path / "r")) >= 4


def build_deciding_merges(path: Path) -> Path:
    """Criss-cross merges (two merge bases), a merge made with `-s ours` (a side's change
    dropped), the same change on both sides, an evil merge (a file added and one deleted by the
    merge), a path both sides delete and the merge restores, unrelated histories, an octopus."""
    b = GitRepoBuilder(path)
    b.write("a.txt", b"1\n2\n3\n")
    b.write("b.txt", b"x\n")
    b.write("gone.txt", b"g\n")
    b.commit("root")
    b.branch("side")
    b.write("a.txt", b"1\n2\n3\n4\n")
    b.write("same.txt", b"s\ns\n")
    b.remove("gone.txt")
    b.commit("main 1")
    main1 = b.head()
    b.checkout("side")
    b.write("b.txt", b"x\ny\nz\n")
    b.write("same.txt", b"s\ns\n")
    b.remove("gone.txt")
    b.commit("side 1")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-m", "criss", "side")
    b.checkout("side")
    b.git("merge", "-q", "--no-ff", "-m", "cross", main1)
    b.write("b.txt", b"x\ny\nz\nw\n")
    b.commit("side 2")
    b.checkout("main")
    b.write("a.txt", b"1\n2\n3\n4\n5\n")
    b.commit("main 2")
    # the criss-cross merge, made evil: a new file, a deleted one, a path restored
    b.git("merge", "-q", "--no-ff", "--no-commit", "side")
    b.write("evil.txt", b"e\nv\ni\nl")
    b.remove("b.txt")
    b.write("gone.txt", b"back\n")
    b.commit("criss-cross, evil")
    b.branch("dropped")
    b.checkout("dropped")
    b.write("a.txt", b"dropped\n")
    b.commit("a change -s ours drops")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-s", "ours", "-m", "ours", "dropped")
    b.git("checkout", "-q", "--orphan", "other")
    b.git("rm", "-q", "-rf", ".")
    b.write("a.txt", b"unrelated\n")
    b.write("u.txt", b"u\n")
    b.commit("unrelated root")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "--allow-unrelated-histories", "-X", "ours", "-m", "u", "other")
    for n in ("o1", "o2"):
        b.branch(n)
        b.checkout(n)
        b.write(f"{n}.txt", b"o\n")
        b.write("a.txt", b"1\n")  # both legs make the same change
        b.commit(n)
        b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-m", "octopus", "o1", "o2")
    return path


def test_code_lines_merges_decide(tmp_path: Path) -> None:
    assert check_every_commit(build_code_merges(tmp_path / "r")) >= 3


def build_code_merges(path: Path) -> Path:
    """Code in six languages whose comments and strings change on two branches: a conflict
    resolved by hand (a comment turned code), a merge made with `-s ours` that drops a side's
    new code, an evil merge that comments a line out, a rename of a file to a language with
    other comment syntax (`#` code in C, a comment in Python), a symlink with a code file's
    name, CRLF, no final newline, and an octopus whose legs add the same comment."""
    b = GitRepoBuilder(path)
    b.write("m.c", b'#include <x.h>\n/* c */\nint a; // c\nchar *s = "//";\n')
    b.write("run.sh", b"#!/bin/sh\necho '#' a#b\n# c\n")
    b.write("q.sql", b"-- c\nSELECT '--';\n/* a /* b */ c */\n")
    b.write("app.js", b"// c\r\nconst t = `\r\n// t\r\n`;\r\n")
    b.write("page.html", b"<p>\n<!-- c\n-->\n</p>")
    b.write("tool.py", b'"""doc\n# doc\n"""\nx = 1  # c\n')
    b.commit("root")
    b.branch("side")
    b.write("m.c", b'#include <x.h>\n/* c */\nint a; // c\nchar *s = "//";\nint b;\n')
    b.write("tool.py", b'"""doc\n# doc\n"""\nx = 1  # c\n# main\n')
    b.commit("main 1")
    b.checkout("side")
    b.write("m.c", b'#include <x.h>\nint c; /* c\n */\nint a; // c\nchar *s = "//";\n')
    b.write("tool.py", b'"""doc\n# doc\n"""\nx = 1  # c\ny = "#"\n')
    b.commit("side 1")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "--no-commit", "side", check=False)
    b.write("m.c", b"#include <x.h>\nint c;\n/* resolved */ int b;\n")
    b.write("tool.py", b'"""doc\n# doc\n"""\nx = 1\ny = "#"  # both\n')
    b.write("q.sql", b"-- SELECT 1;\n/* evil */ SELECT 2;\n")  # the merge's own change
    b.commit("merge: resolved by hand, evil")
    b.branch("dropped")
    b.checkout("dropped")
    b.write("run.sh", b"#!/bin/sh\necho '#' a#b\n# c\necho dropped\n")
    b.commit("new code that -s ours drops")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-s", "ours", "-m", "ours", "dropped")
    b.git("mv", "tool.py", "tool.c")  # `#` lines: comments in Python, code in C
    b.symlink("link.py", "tool.c")
    b.commit("rename to C; a symlink named .py")
    for n in ("o1", "o2"):
        b.branch(n)
        b.checkout(n)
        b.write("page.html", b"<p>\n<!-- c\n-->\n</p>\n<!-- same -->")
        b.write(f"{n}.js", b"/* " + n.encode() + b" */\nlet x = '/*';")
        b.commit(n)
        b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-m", "octopus", "o1", "o2")
    return path


def test_blobs_that_turn_binary(tmp_path: Path) -> None:
    assert check_every_commit(build_turning_binary(tmp_path / "r")) >= 2


def build_turning_binary(path: Path) -> Path:
    """A file that turns binary and back to text, a merge that resolves a text/binary conflict
    with a third content, a merge that drops a binary side with `-s ours`, a path that is a
    file, then a symlink, then a submodule entry, and an octopus whose legs change one binary
    the same way."""
    b = GitRepoBuilder(path)
    b.write("flip.dat", b"text\n")
    b.write("img.bin", b"\x89PNG\x00" + bytes(range(256)) * 40)
    b.write("kind", b"a file\n")
    b.write("late.txt", b"x" * 9000 + b"\x00")  # a NUL after the first 8000 bytes: text
    b.commit("root")
    b.write("flip.dat", b"\x00binary now")
    b.commit("binary")
    b.write("flip.dat", b"text again\nand longer\n")
    b.remove("kind")
    b.symlink("kind", "late.txt")
    b.commit("text again; kind a symlink")
    b.branch("side")
    b.write("flip.dat", b"\x00\x01\x02 binary on main\n")
    b.commit("main: binary")
    b.checkout("side")
    b.write("flip.dat", b"text on side\n")
    b.remove("kind")
    b.gitlink("kind", "0123456789abcdef0123456789abcdef01234567")
    b.commit("side: text, kind a submodule")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "--no-commit", "side", check=False)
    b.write("flip.dat", b"resolved\nby hand\n")
    b.commit("merge: a third content")
    b.branch("bin")
    b.checkout("bin")
    b.write("flip.dat", b"\x00binary dropped by -s ours")
    b.write("img.bin", b"\x00smaller")
    b.commit("bin side")
    b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-s", "ours", "-m", "ours", "bin")
    for n in ("o1", "o2"):
        b.branch(n)
        b.checkout(n)
        b.write("img.bin", b"\x00same on both legs")
        b.write(f"{n}.txt", n.encode())
        b.commit(n)
        b.checkout("main")
    b.git("merge", "-q", "--no-ff", "-m", "octopus", "o1", "o2")
    return path
