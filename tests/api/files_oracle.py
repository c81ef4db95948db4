"""Per-file metrics computed from the git CLI alone: files, hotspots, ownership, truck factor,
coupling. Independent of metre's code (the fixtures' `git log` parsers, `git ls-tree`, `git show`);
used by tests/api/test_files_metrics.py.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from testkit.gitlog import git_head_blobs, served_path
from tests.codeoracle import oracle_code_lines
from tests.fixtures.gitrepo import git_change_letters, git_head_lines, git_numstat, run_git


def _path(raw: bytes) -> str:
    return served_path(raw)


LOCK_FILES = {"uv.lock", "poetry.lock", "package-lock.json", "yarn.lock", "cargo.lock", "go.sum"}


def skipped(path: str) -> bool:
    """Vendored, generated or a lock file: enry's own path calls, plus common lock names."""
    import enry

    return bool(
        enry.is_vendor(path)
        or enry.is_generated(path, b"")
        or path.rsplit("/", 1)[-1].lower() in LOCK_FILES
    )


def git_head_code(repo: Path, rev: str = "HEAD") -> dict[str, int | None]:
    """Path (as served) -> lines of code of its blob at `rev`: Pygments' count of what
    `git cat-file` prints (tests/codeoracle.py), 0 for a binary blob (a NUL in the first 8000
    bytes), a symlink and a submodule entry; None for a language the oracle has no lexer for
    (not compared; a hotspot's must be known)."""
    out: dict[str, int | None] = {}
    for entry in run_git(repo, "ls-tree", "-r", "-z", rev).split(b"\0"):
        if not entry:
            continue
        meta, raw = entry.split(b"\t", 1)
        mode, kind, obj = meta.split()
        path = served_path(raw)
        if kind == b"commit" or mode == b"120000":
            out[path] = 0
            continue
        data = run_git(repo, "cat-file", "blob", obj.decode())
        out[path] = 0 if b"\0" in data[:8000] else oracle_code_lines(path, data)
    return out


@dataclass
class Change:
    path: str
    added: int | None  # None: binary
    removed: int | None
    letter: str


@dataclass
class Commit:
    sha: str
    email: str
    when: datetime
    merge: bool
    changes: list[Change] = field(default_factory=list)


def history(repo: Path) -> list[Commit]:
    """Every commit reachable from HEAD with its numstat rows and change letters."""
    out = run_git(repo, "log", "-z", "--format=%x01%H %P%x00%aE%x00%at")
    commits: dict[str, Commit] = {}
    order: list[str] = []
    for rec in out.split(b"\x01")[1:]:
        head, email, at = rec.rstrip(b"\0").split(b"\0")[:3]
        sha, *parents = head.decode().split()
        when = datetime.fromtimestamp(int(at), UTC)
        commits[sha] = Commit(sha, email.decode(errors="replace").lower(), when, len(parents) > 1)
        order.append(sha)
    for sha, rows in git_numstat(repo).items():
        commits[sha].changes = [Change(_path(p), a, r, "") for p, a, r in rows]
    letters = {
        (sha, _path(p)): letter
        for sha, rows in git_change_letters(repo).items()
        for p, letter in rows
    }
    for c in commits.values():
        for ch in c.changes:
            ch.letter = letters[(c.sha, ch.path)]
    return [commits[s] for s in order]


def expected_files(repo: Path) -> dict[str, dict[str, Any]]:
    """Path -> commits, added, removed, authors, exists, binary (ever), last_change_at, lines
    (from the blob at HEAD; None when absent or ever binary), bytes and binary_at_head (the
    blob at HEAD per `git ls-tree -l` and `git cat-file`; None when absent) and code_lines
    (Pygments' count of the blob at HEAD; None when absent; "?" for a language the oracle has
    no lexer for, not compared)."""
    tree = git_head_lines(repo)
    blobs = git_head_blobs(repo)
    code = git_head_code(repo)
    out: dict[str, dict[str, Any]] = {}
    for c in history(repo):
        for ch in c.changes:
            f = out.setdefault(
                ch.path,
                {"commits": 0, "added": 0, "removed": 0, "authors": set(), "binary": False},
            )
            f["commits"] += 1
            f["added"] += ch.added or 0
            f["removed"] += ch.removed or 0
            f["authors"].add(c.email)
            f["binary"] |= ch.added is None
            f["last_change_at"] = max(f.get("last_change_at", c.when), c.when)
    for p, f in out.items():
        f["exists"] = p in tree
        f["lines"] = tree[p] if p in tree and not f["binary"] else None
        f["bytes"], f["binary_at_head"] = blobs.get(p, (None, None))
        f["code_lines"] = code[p] if p in tree else None
        if f["code_lines"] is None and p in tree:
            f["code_lines"] = "?"
    return out


def expected_hotspots(repo: Path, days: int) -> tuple[date, date, list[dict[str, Any]]]:
    """(first day, last day, ranked files) per CodeScene's hotspots over a window of UTC days
    ending with the latest author day: changes x lines of code at HEAD (files without code
    left out)."""
    commits = history(repo)
    tree = git_head_lines(repo)
    code = git_head_code(repo)
    binary = {ch.path for c in commits for ch in c.changes if ch.added is None}
    last = max(c.when.date() for c in commits)
    first = last - timedelta(days=days - 1)
    changes: dict[str, int] = defaultdict(int)
    authors: dict[str, set[str]] = defaultdict(set)
    for c in commits:
        if first <= c.when.date() <= last:
            for ch in c.changes:
                changes[ch.path] += 1
                authors[ch.path].add(c.email)
    ranked: list[dict[str, Any]] = []
    for p, n in changes.items():
        lines = tree.get(p)
        if p not in tree or p in binary or lines is None or skipped(p):
            continue
        size = code[p]
        assert size is not None, f"no oracle lexer for {p}"
        if not size:
            continue
        ranked.append(
            {
                "path": p,
                "changes": n,
                "lines": lines,
                "code_lines": size,
                "score": n * size,
                "authors": sorted(authors[p]),
            }
        )
    ranked.sort(key=lambda r: (-r["score"], r["path"]))
    return first, last, ranked


def expected_ownership(
    repo: Path, counted: set[str] | None = None
) -> tuple[dict[str, list[tuple[str, float]]], list[str]]:
    """Authors (email, DOA) of every file at HEAD (or of `counted`), and the truck-factor
    removal order."""
    tree = {p for p in git_head_lines(repo) if not skipped(p)} if counted is None else counted
    dl: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fa: dict[str, set[str]] = defaultdict(set)
    for c in history(repo):
        for ch in c.changes:
            dl[ch.path][c.email] += 1
            if ch.letter == "A":
                fa[ch.path].add(c.email)
    owners: dict[str, list[tuple[str, float]]] = {}
    for p in tree:
        total = sum(dl[p].values())
        doas = {
            e: 3.293 + 1.098 * (e in fa[p]) + 0.164 * n - 0.321 * math.log(1 + total - n)
            for e, n in dl[p].items()
        }
        best = max(doas.values(), default=0.0)
        owners[p] = sorted(
            ((e, d) for e, d in doas.items() if d >= 3.293 and d / best > 0.75),
            key=lambda x: (-x[1], x[0]),
        )
    files_of: dict[str, set[str]] = defaultdict(set)
    for p, os_ in owners.items():
        for e, _ in os_:
            files_of[e].add(p)
    ranking = sorted(files_of, key=lambda e: (-len(files_of[e]), e))
    removed: list[str] = []
    gone: set[str] = set()
    for e in ranking:
        orphaned = sum(1 for os_ in owners.values() if all(x in gone for x, _ in os_))
        if 2 * orphaned > len(owners):
            break
        gone.add(e)
        removed.append(e)
    return owners, removed


def expected_coupling(
    repo: Path, max_files: int
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Per-file commits and per-pair shared commits over non-merge commits of at most
    `max_files` files."""
    files: dict[str, int] = defaultdict(int)
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    for c in history(repo):
        paths = sorted({ch.path for ch in c.changes})
        if c.merge or not paths or len(paths) > max_files:
            continue
        for i, a in enumerate(paths):
            files[a] += 1
            for b in paths[i + 1 :]:
                pairs[(a, b)] += 1
    return dict(files), dict(pairs)


def _tree_entries(repo: Path, rev: str) -> dict[str, bytes]:
    out = run_git(repo, "ls-tree", "-r", "-z", rev)
    entries = {}
    for e in out.split(b"\0"):
        if e:
            meta, p = e.split(b"\t", 1)
            entries[_path(p)] = meta
    return entries


def merge_decided(repo: Path) -> set[str]:
    """Paths whose state some merge decided beyond combining its sides, per git itself: for a
    two-parent merge, paths where the recorded result differs from `git merge-tree`'s automatic
    merge, paths it reports conflicted, and paths both sides changed identically (counted
    twice by the non-merge commits); for an octopus, paths that differ from every parent.
    For these, sums over non-merge commits cannot give the state at HEAD."""
    decided: set[str] = set()
    for line in run_git(repo, "rev-list", "--min-parents=2", "--parents", "HEAD").splitlines():
        merge, *parents = line.decode().split()
        result = _tree_entries(repo, merge)
        sides = [_tree_entries(repo, p) for p in parents]
        if len(parents) > 2:
            paths = set(result).union(*sides)
            decided |= {p for p in paths if all(s.get(p) != result.get(p) for s in sides)}
            continue
        auto = run_git(
            repo,
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            *parents,
            check=False,
        ).split(b"\0")
        conflicted = auto[1 : auto.index(b"", 1)] if b"" in auto[1:] else auto[1:]
        decided |= {_path(p) for p in conflicted}
        tree = auto[0].decode()
        diff = run_git(repo, "diff-tree", "-r", "--no-renames", "--name-only", "-z", tree, merge)
        decided |= {_path(p) for p in diff.split(b"\0") if p}
        base = run_git(repo, "merge-base", *parents).decode().split()[0]
        b = _tree_entries(repo, base)
        decided |= {
            p
            for p in set(sides[0]) | set(sides[1])
            if sides[0].get(p) == sides[1].get(p) and sides[0].get(p) != b.get(p)
        }
        decided |= {p for p in set(b) if p not in sides[0] and p not in sides[1]}
    return decided
