"""The merge and empty-commit policy (`policy`, `merges`, `empty`) of every per-commit metric,
against the git CLI (`git rev-list --no-merges`, `git diff-tree --numstat`), per repository and
organisation-wide, on a history with every kind of commit the policy tells apart: empty root,
empty commits (one author has nothing else), mode-only and binary-only changes, clean merges
(one author has nothing else), a conflict resolved by hand (a merge with changes of its own),
a criss-cross and an octopus. Real poller, processor, PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from testkit.gitbuilder import GitRepoBuilder, run_git
from testkit.oracle import (
    expected_activity,
    expected_authors,
    expected_commit_size,
    expected_contributors,
    expected_punchcard,
    policy_shas,
    rollup,
)
from testkit.pipeline import Pipeline
from tests.fixtures.gitrepo import git_commits

pytestmark = pytest.mark.integration

ADA = ("Ada", "ada@example.org")
BOB = ("Bob", "Bob@Example.org")
MERGER = ("Mo Merger", "merger@example.org")  # only ever merges
EMPTY = ("Em Pty", "empty@example.org")  # only ever empty commits


def build_policy_history(path: Path) -> Path:
    b = GitRepoBuilder(path)
    b.commit("empty root", author=EMPTY, date="2024-01-01T09:00:00+0100", allow_empty=True)
    b.write("a.txt", b"one\ntwo\nthree\n")
    b.write("img.bin", b"\x00\x01\x02")
    b.commit("files", author=ADA, date="2024-01-02T10:00:00+0000")
    b.write("img.bin", b"\x00\x01\x02\x03")
    b.commit("binary only", author=BOB, date="2024-01-02T23:30:00-0500")
    b.chmod("a.txt", executable=True)
    b.commit("mode only", author=ADA, date="2024-01-03T08:00:00+0200")
    b.commit("empty", author=EMPTY, date="2024-01-08T12:00:00+0000", allow_empty=True)

    # A clean merge (no changes of its own), by someone who only merges.
    b.branch("side")
    b.checkout("side")
    b.write("side.txt", b"s\n")
    b.commit("side", author=BOB, date="2024-01-09T10:00:00+0000")
    b.commit("empty on side", author=BOB, date="2024-01-09T11:00:00+0000", allow_empty=True)
    b.checkout("main")
    b.write("a.txt", b"one\ntwo\nthree\nfour\n")
    b.commit("main edit", author=ADA, date="2024-01-10T10:00:00+0000")
    b.merge("side", message="merge side", author=MERGER, date="2024-01-11T10:00:00+0000")

    # A conflict resolved by hand: the merge has changes of its own.
    b.branch("conflict")
    b.checkout("conflict")
    b.write("c.txt", b"theirs\n")
    b.commit("theirs", author=BOB, date="2024-01-15T10:00:00+0000")
    b.checkout("main")
    b.write("c.txt", b"ours\n")
    b.commit("ours", author=ADA, date="2024-01-15T11:00:00+0000")
    b.merge("conflict", author=ADA, date="2024-01-16T10:00:00+0000", expect_conflict=True)
    b.write("c.txt", b"resolved\nby hand\n")
    b.commit("resolve", author=ADA, date="2024-01-16T10:00:00+0000")

    # Criss-cross: x and y merge each other, then main merges both (two merge bases).
    b.branch("x")
    b.branch("y")
    b.checkout("x")
    b.write("x.txt", b"x\n")
    b.commit("x1", author=BOB, date="2024-02-01T10:00:00+0000")
    b.checkout("y")
    b.write("y.txt", b"y\n")
    b.commit("y1", author=ADA, date="2024-02-01T11:00:00+0000")
    y1 = b.head()
    b.merge("x", message="x into y", author=MERGER, date="2024-02-02T10:00:00+0000")
    b.checkout("x")
    ident = b._identity(MERGER, "2024-02-02T12:00:00+0000", None, None)
    b.git("merge", "-q", "--no-ff", "--no-edit", "-m", "y into x", y1, extra_env=ident)
    b.checkout("main")
    b.merge("x", "y", message="octopus x y", author=MERGER, date="2024-02-05T10:00:00+0000")

    # An octopus of three fresh branches.
    for name in ("o1", "o2", "o3"):
        b.branch(name, "main")
        b.checkout(name)
        b.write(f"{name}.txt", name.encode() + b"\n")
        b.commit(name, author=BOB, date="2024-02-10T10:00:00+0000")
        b.checkout("main")
    b.merge("o1", "o2", "o3", message="octopus", author=MERGER, date="2024-02-12T10:00:00+0000")
    b.commit("empty tip", author=BOB, date="2024-03-01T10:00:00+0000", allow_empty=True)
    return b.path


@pytest.fixture
def policy_repo(tmp_path: Path) -> Path:
    return build_policy_history(tmp_path / "policy")


def test_the_history_has_what_the_policy_tells_apart(policy_repo: Path) -> None:
    commits = git_commits(policy_repo)
    parents = [len(c.parents) for c in commits.values()]
    assert max(parents) >= 4  # octopus
    assert sum(p >= 2 for p in parents) >= 5
    every = policy_shas(policy_repo, "include", "include")
    assert len(policy_shas(policy_repo, "include", "exclude")) == len(every) - 4  # 4 empty
    assert len(policy_shas(policy_repo, "exclude", "include")) == len(every) - sum(
        p >= 2 for p in parents
    )
    x, y = (run_git(policy_repo, "rev-parse", r).decode().strip() for r in ("x", "y"))
    assert len(run_git(policy_repo, "merge-base", "--all", x, y).split()) == 2  # criss-cross


QUERIES: tuple[dict[str, str], ...] = (
    {},
    {"merges": "exclude"},
    {"empty": "exclude"},
    {"merges": "exclude", "empty": "exclude"},
    {"policy": "github"},
    {"policy": "github", "merges": "include"},
    {"policy": "all"},
    {"merges": "include"},
)


def resolved(query: dict[str, str], metric: str) -> dict[str, Any]:
    """The provenance parameters a query resolves to (commit-size leaves merges out by
    default; a preset sets both; explicit values win)."""
    merges = "exclude" if metric == "commit-size" else "include"
    empty = "include"
    if query.get("policy") == "github":
        merges, empty = "exclude", "exclude"
    elif query.get("policy") == "all":
        merges, empty = "include", "include"
    return {
        "policy": query.get("policy"),
        "merges": query.get("merges", merges),
        "empty": query.get("empty", empty),
    }


async def _check(api: Pipeline, base: str, extra: dict[str, str], repos: list[Path]) -> None:
    """Every per-commit metric under every policy at `base` (a repository's prefix or the
    organisation-wide one), against git."""
    c, one = api.client, "/repos/" in base
    for query in QUERIES:
        for metric in ("activity", "authors", "contributors", "punchcard", "commit-size"):
            if metric == "authors" and not one:
                continue  # no organisation-wide form
            p = resolved(query, metric)
            shas: set[str] = set()
            for repo in repos:
                shas |= policy_shas(repo, p["merges"], p["empty"])
            r = await c.get(f"{base}/{metric}", params={**extra, **query})
            assert r.status_code == 200, (metric, query, r.text)
            body = r.json()
            got_params = body["provenance"]["params"]
            assert {k: got_params[k] for k in p} == p, (metric, query)
            if metric == "activity":
                days: dict[Any, dict[str, int]] = {}
                for repo in repos:
                    for day, row in expected_activity(repo, shas).items():
                        acc = days.setdefault(day, dict.fromkeys(row, 0))
                        for k, v in row.items():
                            acc[k] += v
                for granularity in ("day", "week", "month"):
                    r = await c.get(
                        f"{base}/activity",
                        params={**extra, **query, "granularity": granularity},
                    )
                    assert r.json()["series"] == rollup(days, granularity), (query, granularity)
            elif metric == "authors":
                want = expected_authors(repos[0], shas)
                got = {a["email"]: a for a in body["authors"]}
                assert set(got) == set(want), query
                for email, a in want.items():
                    g = got[email]
                    assert (g["commits"], g["added"], g["removed"], g["name"]) == (
                        a["commits"], a["added"], a["removed"], a["last"][1]
                    ), (query, email)  # fmt: skip
                    assert g["first_commit_at"] == a["first"].isoformat(), (query, email)
                    assert g["last_commit_at"] == a["last"][0].isoformat(), (query, email)
            elif metric == "contributors":
                for granularity, gap in (("day", 0), ("week", 3), ("month", 90)):
                    r = await c.get(
                        f"{base}/contributors",
                        params={**extra, **query, "granularity": granularity,
                                "gap_days": str(gap)},
                    )  # fmt: skip
                    want_series = expected_contributors(repos, granularity, gap, shas)
                    assert r.json()["series"] == want_series, (query, granularity)
            elif metric == "punchcard":
                assert body["commits"] == expected_punchcard(repos, shas), query
                assert body["total"] == len(shas), query
            else:
                want_sizes = expected_commit_size(repos, shas)
                for m, w in want_sizes.items():
                    g = body[m]
                    assert (g["commits"], g["percentiles"], g["histogram"]) == (
                        w["commits"], w["percentiles"], w["histogram"]
                    ), (query, m)  # fmt: skip
                    assert (g["mean"] is None) == (w["mean"] is None)
                    if w["mean"] is not None:
                        assert abs(g["mean"] - w["mean"]) < 1e-9


async def test_every_policy_matches_git(
    metre_api: Pipeline, policy_repo: Path, history_factory: Callable[..., Path]
) -> None:
    generated = history_factory(commits=120, seed=11)
    ids = {await metre_api.ingest(policy_repo): policy_repo}
    ids[await metre_api.ingest(generated)] = generated
    for rid, path in ids.items():
        await _check(metre_api, f"/api/v1/repos/{rid}/metrics", {}, [path])
    await _check(metre_api, "/api/v1/metrics", {}, list(ids.values()))
    first = next(iter(ids))
    await _check(metre_api, "/api/v1/metrics", {"repos": str(first)}, [ids[first]])


async def test_github_policy_drops_merge_only_and_empty_only_authors(
    metre_api: Pipeline, policy_repo: Path
) -> None:
    rid = await metre_api.ingest(policy_repo)
    c = metre_api.client
    everyone = {a["email"] for a in (await c.get(f"/api/v1/repos/{rid}/metrics/authors")).json()[
        "authors"
    ]}  # fmt: skip
    assert {MERGER[1], EMPTY[1]} <= everyone
    r = await c.get(f"/api/v1/repos/{rid}/metrics/authors", params={"policy": "github"})
    people = {a["email"] for a in r.json()["authors"]}
    assert people == everyone - {MERGER[1], EMPTY[1]}
    bob = next(a for a in r.json()["authors"] if a["email"] == BOB[1].lower())
    assert bob["last_commit_at"] == "2024-02-10T10:00:00+00:00"  # not his empty tip

    r = await c.get(f"/api/v1/repos/{rid}/metrics/activity", params={"merges": "exclude"})
    assert {row["merges"] for row in r.json()["series"]} == {0}


async def test_policy_errors_etags_and_catalogue(metre_api: Pipeline, policy_repo: Path) -> None:
    rid = await metre_api.ingest(policy_repo)
    c = metre_api.client
    for metric in ("activity", "authors", "contributors", "punchcard", "commit-size"):
        for bad in ({"merges": "no"}, {"empty": "yes"}, {"policy": "gitlab"}):
            r = await c.get(f"/api/v1/repos/{rid}/metrics/{metric}", params=bad)
            assert r.status_code == 422, (metric, bad)
            assert r.json()["error"]["status"] == 422
        tags, distinct = set(), set()
        for query in QUERIES[:4]:
            r = await c.get(f"/api/v1/repos/{rid}/metrics/{metric}", params=query)
            tags.add(r.headers["etag"])
            distinct.add(tuple(sorted(resolved(query, metric).items())))
        assert len(tags) == len(distinct) >= 2, metric

    entries = {m["name"]: m for m in (await c.get("/api/v1/metrics")).json()["metrics"]}
    for metric in ("activity", "authors", "contributors", "punchcard", "commit-size"):
        params = {p["name"]: p for p in entries[metric]["parameters"]}
        assert params["merges"]["choices"] == ["include", "exclude"]
        assert params["empty"]["default"] == "include"
        assert params["policy"]["default"] is None
        assert params["policy"]["choices"] == ["github", "all"]
        want = "exclude" if metric == "commit-size" else "include"
        assert params["merges"]["default"] == want
        # authors and contributors: 3 since they count individuals (identities)
        assert entries[metric]["version"] == (3 if metric in ("authors", "contributors") else 2)


async def test_from_and_to_cut_periods_by_day(metre_api: Pipeline, policy_repo: Path) -> None:
    """Documented: `from`/`to` select UTC days; an edge period keeps its name (its first day,
    which may lie outside the range) and holds only the days inside the range."""
    rid = await metre_api.ingest(policy_repo)
    shas = policy_shas(policy_repo, "include", "include")
    days = expected_activity(policy_repo, shas)
    lo, hi = date(2024, 1, 10), date(2024, 2, 7)  # a Wednesday, a Wednesday
    inside = {d: row for d, row in days.items() if lo <= d <= hi}
    for granularity in ("week", "month"):
        r = await metre_api.client.get(
            f"/api/v1/repos/{rid}/metrics/activity",
            params={"granularity": granularity, "from": lo.isoformat(), "to": hi.isoformat()},
        )
        series = r.json()["series"]
        assert series == rollup(inside, granularity), granularity
    assert series[0]["period"] == "2024-01-01"  # named by the month's first day, cut at the 10th
    whole_january = rollup({d: v for d, v in days.items() if d.month == 1}, "month")[0]
    assert series[0]["commits"] < whole_january["commits"]
