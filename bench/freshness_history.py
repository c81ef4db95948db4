"""Generated histories for bench/freshness.py, written with `git fast-import` (I/O).

`generate(path, commits)` builds a bare repository whose history looks like a busy project's:
a few thousand files in nested directories, a main branch and long-lived branches merged back
and forth (merges of each into the other, so criss-cross merge bases occur), about one commit
in seven a merge, edits of a few lines to one to three files per commit, increasing dates and
a pool of authors. It ends as one big pack (`git repack -a -d`), as a cloned project would be.
`extend(path, commits, merges)` commits more on top (what a push brings) through the git CLI.
Deterministic for a given seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["extend", "generate"]

_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def git_env() -> dict[str, str]:
    """The environment every git command here runs in (no user or system configuration)."""
    return {**os.environ, **_ENV}


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), *args], input=stdin, capture_output=True, check=True,
        env=git_env(),
    ).stdout  # fmt: skip


def _lines(rng: random.Random, n: int) -> list[bytes]:
    return [
        b"%d %s\n" % (rng.randrange(10**6), rng.choice((b"x", b"{", b"}", b""))) for _ in range(n)
    ]


def _edit(rng: random.Random, lines: list[bytes]) -> list[bytes]:
    out = list(lines)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(out) + 1)
        k = rng.choice((1, 1, 2, 5))
        if rng.random() < 0.6 or len(out) < 10:
            out[i:i] = _lines(rng, k)
        else:
            out[i : i + k] = _lines(rng, rng.randrange(0, k + 1))
    return out


def _stream(w: IO[bytes], commits: int, seed: int, files: int) -> None:
    rng = random.Random(seed)
    names = [b"src/m%02d/p%02d/f%05d.c" % (i % 40, (i // 40) % 8, i) for i in range(files)]
    authors = [b"Dev %d <dev%d@example.org>" % (i, i) for i in range(60)]
    branches = [b"main", b"next", b"maint", b"topic-a", b"topic-b"]
    state: dict[bytes, dict[bytes, list[bytes]]] = {}
    changed: dict[bytes, set[bytes]] = {b: set() for b in branches}
    tip: dict[bytes, int] = {}
    ts = 1_200_000_000
    mark = 0

    def commit(branch: bytes, parents: list[int], edits: dict[bytes, list[bytes]]) -> None:
        nonlocal mark, ts
        mark += 1
        ts += rng.randrange(60, 3000)
        who = rng.choice(authors)
        tz = rng.choice((b"+0000", b"-0700", b"+0100", b"+0530"))
        msg = b"change %d on %s\n" % (mark, branch)
        w.write(b"commit refs/heads/%s\nmark :%d\n" % (branch, mark))
        w.write(b"author %s %d %s\ncommitter %s %d %s\n" % (who, ts, tz, who, ts, tz))
        w.write(b"data %d\n%s" % (len(msg), msg))
        if parents:
            w.write(b"from :%d\n" % parents[0])
        for p in parents[1:]:
            w.write(b"merge :%d\n" % p)
        for name in sorted(edits):
            data = b"".join(edits[name])
            w.write(b"M 100644 inline %s\ndata %d\n%s\n" % (name, len(data), data))
        tip[branch] = mark

    first = {n: _lines(rng, rng.randrange(20, 120)) for n in names}
    commit(b"main", [], first)
    for b in branches:
        state[b] = dict(first)
        if b != b"main":
            w.write(b"reset refs/heads/%s\nfrom :1\n\n" % b)
            tip[b] = 1
    for _ in range(commits - 1):
        r = rng.random()
        if r < 0.14:  # a merge: one branch into another, taking the other side's changes
            into, other = rng.sample(branches, 2)
            edits = {n: state[other][n] for n in changed[other]}
            state[into].update(edits)
            changed[into] |= changed[other]
            changed[other] = set()
            commit(into, [tip[into], tip[other]], edits)
            continue
        b = b"main" if r < 0.55 else rng.choice(branches)
        edits = {}
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            name = rng.choice(names)
            edits[name] = state[b][name] = _edit(rng, state[b][name])
        changed[b] |= edits.keys()
        commit(b, [tip[b]], edits)
    w.write(b"done\n")


def generate(path: Path, commits: int, seed: int = 1, files: int = 3000) -> Path:
    """A bare repository at `path` with `commits` commits (see the module); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True, env=git_env()
    )
    proc = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", "--done"], stdin=subprocess.PIPE,
        env=git_env(),
    )  # fmt: skip
    assert proc.stdin is not None
    _stream(proc.stdin, commits, seed, min(files, max(10, commits)))
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    git(path, "repack", "-a", "-d", "-q")
    for i, rev in enumerate(
        git(path, "rev-list", "--first-parent", "-n", "400", "main").split()[::40]
    ):
        git(path, "tag", f"v{i}", rev.decode())
    return path


def extend(work: Path, commits: int, merges: int, seed: int) -> str:
    """Commit `commits` commits (`merges` of them merges of a side branch) in the work tree
    `work` (a non-bare clone) and return the new head. Blocking."""
    rng = random.Random(seed)
    branch = git(work, "symbolic-ref", "--short", "HEAD").decode().strip()
    names = git(work, "ls-files").split()
    done = 0
    every = max(1, commits // max(1, merges)) if merges else 0
    with tempfile.TemporaryDirectory():
        while done < commits:
            if every and done % every == every - 1 and done + 2 <= commits:
                git(work, "checkout", "-q", "-B", "side", "HEAD~1")
                _touch(work, rng, names)
                git(work, "commit", "-q", "-a", "-m", f"side {seed}.{done}")
                git(work, "checkout", "-q", branch)
                git(
                    work, "merge", "-q", "--no-ff", "--no-edit", "-s", "ort", "-X", "theirs", "side"
                )
                done += 2
                continue
            _touch(work, rng, names)
            git(work, "commit", "-q", "-a", "-m", f"push {seed}.{done}")
            done += 1
    return git(work, "rev-parse", "HEAD").decode().strip()


def _touch(work: Path, rng: random.Random, names: list[bytes]) -> None:
    name = work / rng.choice(names).decode()
    with open(name, "ab") as f:
        f.write(b"%d pushed\n" % rng.randrange(10**9))
