"""What metre must serve for a repository, computed from the git CLI alone, and the check that
compares a running metre's API with it. Used by every end-to-end test (embedded, distributed,
crash and restart)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from testkit.gitbuilder import run_git
from testkit.gitlog import (
    GitCommit,
    git_commits,
    git_head_blobs,
    git_head_lines,
    git_numstat,
    served_path,
)

Files = dict[str, Counter[tuple[str, int, int, bool]]]
"""sha -> multiset of (path, added, removed, binary): `expected_files`."""


def _path(raw: bytes) -> str:
    return served_path(raw)


def expected_files(repo: Path) -> Files:
    """sha -> multiset of (path, added, removed, binary), from `git log --numstat`."""
    return {
        sha: Counter((_path(p), a or 0, r or 0, a is None) for p, a, r in rows)
        for sha, rows in git_numstat(repo).items()
    }


def policy_shas(repo: Path, merges: str, empty: str) -> set[str]:
    """The commits a merge / empty-commit policy counts, from git alone: `git rev-list`
    (`--no-merges` to exclude merges), less, for `empty=exclude`, the non-merge commits whose
    `git diff-tree -r --root --numstat` against their parent (the empty tree for a root)
    lists no file."""
    shas = set(run_git(repo, "rev-list", "HEAD").decode().split())
    if merges == "exclude":
        shas = set(run_git(repo, "rev-list", "--no-merges", "HEAD").decode().split())
    if empty == "exclude":
        singles = run_git(repo, "rev-list", "--no-merges", "HEAD")
        out = run_git(
            repo, "diff-tree", "--stdin", "-r", "--root", "--numstat", "--no-renames",
            stdin=singles,
        )  # fmt: skip
        changed, current = set(), None
        for line in out.decode(errors="replace").splitlines():
            if "\t" not in line and len(line) == 40:
                current = line
            elif line.strip() and current is not None:
                changed.add(current)
        shas -= set(singles.decode().split()) - changed
    return shas


def expected_activity(
    repo: Path,
    shas: set[str] | None = None,
    *,
    read: tuple[dict[str, GitCommit], Files] | None = None,
) -> dict[date, dict[str, int]]:
    """UTC author day -> commits, merges, added, removed (of `shas` only, when given).
    `read`: `git_commits` and `expected_files` of `repo` when the caller has them already."""
    commits, files = read or (git_commits(repo), expected_files(repo))
    days: dict[date, dict[str, int]] = defaultdict(
        lambda: {"commits": 0, "merges": 0, "added": 0, "removed": 0}
    )
    for sha, c in commits.items():
        if shas is not None and sha not in shas:
            continue
        d = days[c.author_time.astimezone(UTC).date()]
        d["commits"] += 1
        d["merges"] += len(c.parents) > 1
        d["added"] += sum(n * k[1] for k, n in files[sha].items())
        d["removed"] += sum(n * k[2] for k, n in files[sha].items())
    return dict(days)


def _period(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def rollup(days: dict[date, dict[str, int]], granularity: str) -> list[dict[str, Any]]:
    out: dict[date, dict[str, int]] = defaultdict(
        lambda: {"commits": 0, "merges": 0, "added": 0, "removed": 0}
    )
    for day, row in days.items():
        for k, v in row.items():
            out[_period(day, granularity)][k] += v
    return [{"period": p.isoformat(), **out[p]} for p in sorted(out)]


def expected_authors(
    repo: Path,
    shas: set[str] | None = None,
    *,
    read: tuple[dict[str, GitCommit], Files] | None = None,
) -> dict[str, dict[str, Any]]:
    """Lower-cased email -> totals; the name is the one on the latest commit (ties: greatest).
    Over `shas` only, when given; `read` as for `expected_activity`."""
    commits, files = read or (git_commits(repo), expected_files(repo))
    authors: dict[str, dict[str, Any]] = {}
    for sha, c in commits.items():
        if shas is not None and sha not in shas:
            continue
        email = c.author_email.lower()
        when = c.author_time.astimezone(UTC)
        a = authors.setdefault(
            email,
            {"commits": 0, "added": 0, "removed": 0, "first": when, "last": (when, c.author_name)},
        )
        a["commits"] += 1
        a["added"] += sum(n * k[1] for k, n in files[sha].items())
        a["removed"] += sum(n * k[2] for k, n in files[sha].items())
        a["first"] = min(a["first"], when)
        a["last"] = max(a["last"], (when, c.author_name))
    return authors


def _instant(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


async def wait_ingested(
    client: httpx.AsyncClient, repo_id: int, commits: int, timeout: float = 120.0
) -> dict[str, Any]:
    """Poll the API until the repository is idle with `commits` ingested."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    repo: dict[str, Any] = {}
    while loop.time() < deadline:
        r = await client.get(f"/api/v1/repos/{repo_id}")
        r.raise_for_status()
        repo = r.json()
        if repo["state"] == "failed":
            raise AssertionError(f"repository failed: {repo['error']}")
        if repo["state"] == "idle" and repo["commits"] == commits:
            return repo
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ingested in {timeout} s: {repo}")


async def assert_api_matches_git(
    client: httpx.AsyncClient, repo_id: int, repo: Path, *, every_commit: bool = True
) -> None:
    """Every number the API serves for `repo_id` equals what git says of `repo`."""
    commits = git_commits(repo)
    head = next(iter(commits))  # git log lists the tip first
    info = (await client.get(f"/api/v1/repos/{repo_id}")).json()
    assert info["commits"] == len(commits)
    assert info["head"] == head
    files = expected_files(repo)  # one `git log --numstat` for every check below
    read = (commits, files)

    if every_commit:
        sem = asyncio.Semaphore(16)

        async def check(sha: str) -> None:
            async with sem:
                r = await client.get(f"/api/v1/repos/{repo_id}/commits/{sha}")
            assert r.status_code == 200, (sha, r.text)
            body = r.json()
            got = Counter((f["path"], f["added"], f["removed"], f["binary"]) for f in body["files"])
            assert got == files[sha], sha
            c = commits[sha]
            assert tuple(body["parents"]) == c.parents
            assert body["is_merge"] == (len(c.parents) > 1)
            assert body["author"]["email"] == c.author_email.lower()
            assert _instant(body["author"]["time"]) == c.author_time.astimezone(UTC)
            assert _instant(body["committer"]["time"]) == c.committer_time.astimezone(UTC)

        await asyncio.gather(*(check(sha) for sha in commits))

    days = expected_activity(repo, read=read)
    for granularity in ("day", "week", "month"):
        r = await client.get(
            f"/api/v1/repos/{repo_id}/metrics/activity", params={"granularity": granularity}
        )
        assert r.status_code == 200, r.text
        assert r.json()["series"] == rollup(days, granularity), granularity

    want = expected_authors(repo, read=read)
    r = await client.get(f"/api/v1/repos/{repo_id}/metrics/authors")
    assert r.status_code == 200, r.text
    got = {a["email"]: a for a in r.json()["authors"]}
    assert set(got) == set(want)
    for email, a in want.items():
        g = got[email]
        assert (g["commits"], g["added"], g["removed"]) == (
            a["commits"],
            a["added"],
            a["removed"],
        ), email
        assert _instant(g["first_commit_at"]) == a["first"], email
        assert _instant(g["last_commit_at"]) == a["last"][0], email
        assert g["name"] == a["last"][1], email


# -- the catalogue metrics (contributors, punch card, commit size, languages) -----------------
# Each is computed from the git CLI over one or more repositories (the organisation-wide form
# sums or unites them), by a route deliberately different from metre's.


def expected_contributors(
    repos: list[Path], granularity: str, gap_days: int, shas: set[str] | None = None
) -> list[dict[str, Any]]:
    """Per period: active, new, returning (a commit on day d, some earlier commit, and none
    on the gap_days days before d), cumulative; identity = lower-cased author email. Over
    `shas` only, when given."""
    days: dict[str, set[date]] = defaultdict(set)
    for repo in repos:
        for c in git_commits(repo).values():
            if shas is not None and c.sha not in shas:
                continue
            days[c.author_email.lower()].add(c.author_time.astimezone(UTC).date())
    periods = sorted({_period(d, granularity) for ds in days.values() for d in ds})
    out = []
    for p in periods:
        active = new = returning = cumulative = 0
        for ds in days.values():
            first = min(ds)
            cumulative += _period(first, granularity) <= p
            in_p = [d for d in ds if _period(d, granularity) == p]
            if not in_p:
                continue
            active += 1
            new += _period(first, granularity) == p
            returning += any(
                d > first and not any(d - timedelta(days=k) in ds for k in range(1, gap_days + 1))
                for d in in_p
            )
        out.append({"period": p.isoformat(), "active": active, "new": new,
                    "returning": returning, "cumulative": cumulative})  # fmt: skip
    return out


def expected_punchcard(repos: list[Path], shas: set[str] | None = None) -> list[list[int]]:
    """7 x 24 counts of commits by the author's local weekday (Monday first) and hour, from
    `git log --date=format:%u %H` (git prints the date in the author's own offset). Over
    `shas` only, when given."""
    grid = [[0] * 24 for _ in range(7)]
    for repo in repos:
        out = run_git(repo, "log", "--format=%H %ad", "--date=format:%u %H", "HEAD")
        for line in out.decode().splitlines():
            sha, weekday, hour = line.split()
            if shas is not None and sha not in shas:
                continue
            grid[int(weekday) - 1][int(hour)] += 1
    return grid


def _nearest_rank(values: list[int], p: int) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(1, -(-p * len(s) // 100)) - 1]


def _histogram(values: list[int]) -> list[dict[str, int]]:
    if not values:
        return []
    bins = [(0, 0)]
    while bins[-1][1] < max(values):
        lo = bins[-1][1] + 1
        bins.append((lo, 2 * lo - 1))
    return [
        {"min": lo, "max": hi, "commits": sum(lo <= v <= hi for v in values)} for lo, hi in bins
    ]


def expected_commit_size(repos: list[Path], shas: set[str] | None = None) -> dict[str, Any]:
    """Files and lines (added + removed) changed per non-merge commit (per commit of `shas`,
    when given: a merge as numstat shows it): count, mean, nearest-rank percentiles,
    power-of-two histogram."""
    sizes: dict[str, list[int]] = {"files": [], "lines": []}
    for repo in repos:
        numstat = git_numstat(repo)
        for sha, c in git_commits(repo).items():
            if (len(c.parents) > 1) if shas is None else (sha not in shas):
                continue
            rows = numstat[sha]
            sizes["files"].append(len(rows))
            sizes["lines"].append(sum((a or 0) + (r or 0) for _, a, r in rows))
    return {
        m: {
            "commits": len(v),
            "mean": sum(v) / len(v) if v else None,
            "percentiles": {f"p{p}": _nearest_rank(v, p) for p in (50, 75, 90, 99)},
            "histogram": _histogram(v),
        }
        for m, v in sizes.items()
    }


def expected_languages(repos: list[Path]) -> dict[str, dict[str, int]]:
    """Language (Linguist's, by enry's calls on the path; programming and markup only;
    vendored, generated, documentation and lock files out) -> text file changes, added,
    removed (numstat, binary files left out), and lines at HEAD: git's line count of every text
    file at HEAD never counted as binary (merges' own changes included: git ls-tree, cat-file);
    a path ever binary counts its numstat added - removed instead; bytes at HEAD: the sizes
    `git ls-tree -l` prints of its blobs that are not binary (git's rule on `git cat-file`)."""
    import enry

    locks = {"uv.lock", "poetry.lock", "package-lock.json", "yarn.lock", "cargo.lock", "go.sum"}

    out: dict[str, dict[str, int]] = defaultdict(
        lambda: {"changes": 0, "added": 0, "removed": 0, "lines": 0, "bytes": 0}
    )

    def lang(path: str) -> str | None:
        name = enry.get_language(path, b"")
        if (
            not name
            or enry.get_language_type(name) not in ("programming", "markup")
            or enry.is_vendor(path)
            or enry.is_generated(path, b"")
            or enry.is_documentation(path)
            or path.rsplit("/", 1)[-1].lower() in locks
        ):
            return None
        return str(name)

    for repo in repos:
        ever_binary: set[str] = set()
        net: dict[str, int] = defaultdict(int)
        for rows in git_numstat(repo).values():
            for raw, a, r in rows:
                path = _path(raw)
                if a is None:
                    ever_binary.add(path)
                    continue
                name = lang(path)
                if name is None:
                    continue
                row = out[name]
                row["changes"] += 1
                row["added"] += a
                row["removed"] += r or 0
                net[path] += a - (r or 0)
        for path, n in git_head_lines(repo).items():
            name = lang(path)
            if name is not None and path not in ever_binary and n is not None:
                out[name]["lines"] += n
        for path in ever_binary:
            name = lang(path)
            if name is not None:
                out[name]["lines"] += net.get(path, 0)
        for path, (size, binary) in git_head_blobs(repo).items():
            name = lang(path)
            if name is not None and not binary and size:
                out[name]["bytes"] += size
    return dict(out)
