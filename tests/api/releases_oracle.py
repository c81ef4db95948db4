"""Releases and lead time computed with the git CLI alone (the test oracle).

Which tags are releases: `git tag --list --merged <branch> <patterns>` (git's own wildmatch on
the names, the tagged object a commit in the branch's history). A tag's release time:
`%(taggerdate)` of an annotated tag, the committer date of the tagged commit otherwise. Each
commit of `git rev-list <branch>` belongs to the earliest release (then the smallest name)
among `git tag --contains <commit>`; `git describe --contains` must name one of those.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from testkit.gitbuilder import run_git

PATTERNS = ("v[0-9]*", "[0-9]*")


def _git(repo: Path, *args: str) -> str:
    return run_git(repo, *args).decode()


def _rank(values: list[int], p: int) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(1, -(-p * len(s) // 100)) - 1]


def _pcts(values: list[int]) -> dict[str, int | None]:
    return {f"p{p}": _rank(values, p) for p in (50, 75, 90)}


def release_tags(repo: Path, branch: str = "main") -> dict[str, dict[str, Any]]:
    """Release name -> sha (peeled), time (unix), offset text, annotated."""
    names = _git(repo, "tag", "--list", "--merged", branch, *PATTERNS).split()
    out = {}
    for name in names:
        kind = _git(repo, "cat-file", "-t", f"refs/tags/{name}").strip()
        sha = _git(repo, "rev-parse", f"refs/tags/{name}^{{commit}}").strip()
        if kind == "tag":
            fmt = "%(taggerdate:unix) %(taggerdate:iso-strict)"
            when = _git(repo, "for-each-ref", f"--format={fmt}", f"refs/tags/{name}").split()
        else:
            when = _git(repo, "log", "-1", "--format=%ct %cI", sha).split()
        out[name] = {"sha": sha, "unix": int(when[0]), "iso": when[1], "annotated": kind == "tag"}
    return out


def _commits(repo: Path, branch: str) -> dict[str, dict[str, int]]:
    """sha -> author time, parents, lines added/removed (numstat, binary as 0)."""
    out: dict[str, dict[str, int]] = {}
    log = _git(repo, "log", "--numstat", "--no-renames", "--minimal", "--format=@%H %at %P", branch)
    cur: dict[str, int] = {}
    for line in log.splitlines():
        if line.startswith("@"):
            sha, at, *parents = line[1:].split()
            cur = out[sha] = {"at": int(at), "parents": len(parents), "added": 0, "removed": 0}
        elif line.strip():
            a, r, _ = line.split("\t", 2)
            cur["added"] += 0 if a == "-" else int(a)
            cur["removed"] += 0 if r == "-" else int(r)
    return out


def first_release(repo: Path, branch: str = "main") -> dict[str, str | None]:
    """Each commit of the branch -> the first release containing it (None: unreleased)."""
    tags = release_tags(repo, branch)
    out: dict[str, str | None] = {}
    for sha in _git(repo, "rev-list", branch).split():
        containing = _git(repo, "tag", "--list", "--contains", sha, *PATTERNS).split()
        released = [t for t in containing if t in tags]
        if released:
            match = [f"--match={p}" for p in PATTERNS]
            described = _git(repo, "describe", "--contains", *match, sha).strip()
            assert described.split("~")[0].split("^")[0] in containing, (sha, described)
        out[sha] = min(released, key=lambda t: (tags[t]["unix"], t)) if released else None
    return out


def expected_releases(repo: Path, branch: str = "main") -> dict[str, Any]:
    tags = release_tags(repo, branch)
    commits = _commits(repo, branch)
    owner = first_release(repo, branch)
    rows = []
    for name in sorted(tags, key=lambda t: (tags[t]["unix"], t)):
        mine = [s for s, t in owner.items() if t == name]
        rows.append({
            "tag": name,
            "sha": tags[name]["sha"],
            "annotated": tags[name]["annotated"],
            "commits": len(mine),
            "merges": sum(commits[s]["parents"] > 1 for s in mine),
            "added": sum(commits[s]["added"] for s in mine),
            "removed": sum(commits[s]["removed"] for s in mine),
            "lead_time": _pcts([tags[name]["unix"] - commits[s]["at"] for s in mine]),
        })  # fmt: skip
    return {"releases": rows, "unreleased": sum(t is None for t in owner.values())}


def _period(unix: int, granularity: str) -> str:
    d = datetime.fromtimestamp(unix, UTC).date()
    if granularity == "week":
        d -= timedelta(days=d.weekday())
    elif granularity == "month":
        d = date(d.year, d.month, 1)
    return d.isoformat()


def expected_lead_time(repo: Path, granularity: str, branch: str = "main") -> dict[str, Any]:
    tags = release_tags(repo, branch)
    commits = _commits(repo, branch)
    owner = first_release(repo, branch)
    periods: dict[str, dict[str, Any]] = {}
    for name, t in tags.items():
        p = periods.setdefault(_period(t["unix"], granularity), {"releases": 0, "times": []})
        p["releases"] += 1
        p["times"] += [t["unix"] - commits[s]["at"] for s, o in owner.items() if o == name]
    everything = [tags[o]["unix"] - commits[s]["at"] for s, o in owner.items() if o is not None]
    return {
        "series": [
            {
                "period": k,
                "releases": v["releases"],
                "commits": len(v["times"]),
                "lead_time": _pcts(v["times"]),
            }
            for k, v in sorted(periods.items())
        ],
        "total": {
            "releases": len(tags),
            "commits": len(everything),
            "lead_time": _pcts(everything),
        },
        "unreleased": sum(o is None for o in owner.values()),
    }
