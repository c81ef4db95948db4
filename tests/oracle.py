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

from tests.fixtures.gitrepo import git_commits, git_numstat


def _path(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def expected_files(repo: Path) -> dict[str, Counter[tuple[str, int, int, bool]]]:
    """sha -> multiset of (path, added, removed, binary), from `git log --numstat`."""
    return {
        sha: Counter((_path(p), a or 0, r or 0, a is None) for p, a, r in rows)
        for sha, rows in git_numstat(repo).items()
    }


def expected_activity(repo: Path) -> dict[date, dict[str, int]]:
    """UTC author day -> commits, merges, added, removed."""
    files = expected_files(repo)
    days: dict[date, dict[str, int]] = defaultdict(
        lambda: {"commits": 0, "merges": 0, "added": 0, "removed": 0}
    )
    for sha, c in git_commits(repo).items():
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


def expected_authors(repo: Path) -> dict[str, dict[str, Any]]:
    """Lower-cased email -> totals; the name is the one on the latest commit (ties: greatest)."""
    files = expected_files(repo)
    authors: dict[str, dict[str, Any]] = {}
    for sha, c in git_commits(repo).items():
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

    if every_commit:
        files = expected_files(repo)
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

    days = expected_activity(repo)
    for granularity in ("day", "week", "month"):
        r = await client.get(
            f"/api/v1/repos/{repo_id}/metrics/activity", params={"granularity": granularity}
        )
        assert r.status_code == 200, r.text
        assert r.json()["series"] == rollup(days, granularity), granularity

    want = expected_authors(repo)
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
