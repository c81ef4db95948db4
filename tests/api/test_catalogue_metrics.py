"""The catalogue metrics over the API against the git CLI, on the awkward repository and a
generated history, per repository and organisation-wide; provenance, ETags and 304s; the
catalogue; metric-update events. Real poller, processor, PostgreSQL; no mocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.oracle import (
    expected_activity,
    expected_commit_size,
    expected_contributors,
    expected_languages,
    expected_punchcard,
    rollup,
)
from testkit.pipeline import Pipeline
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits

pytestmark = pytest.mark.integration

NAMES = ("activity", "authors", "commit-size", "contributors", "languages", "punchcard")


def _close(got: Any, want: Any) -> None:
    """Equal, floats to 1e-9."""
    if isinstance(want, float):
        assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (got, want)
    elif isinstance(want, dict):
        assert set(got) == set(want), (got, want)
        for k in want:
            _close(got[k], want[k])
    elif isinstance(want, list):
        assert len(got) == len(want), (got, want)
        for g, w in zip(got, want, strict=True):
            _close(g, w)
    else:
        assert got == want


async def _check(api: Pipeline, base: str, query: dict[str, str], repos: list[Path]) -> None:
    """Every catalogue metric at `base` (a repository's or the organisation-wide prefix)."""
    c = api.client
    for granularity in ("day", "week", "month"):
        for gap in (0, 1, 3, 90):
            params = {**query, "granularity": granularity, "gap_days": str(gap)}
            r = await c.get(f"{base}/contributors", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            want = expected_contributors(repos, granularity, gap)
            assert body["series"] == want, (granularity, gap)
            assert body["provenance"]["params"] == {
                "granularity": granularity, "gap_days": gap,
                "policy": None, "merges": "include", "empty": "include", "bots": "include",
            }  # fmt: skip

    r = await c.get(f"{base}/punchcard", params=query)
    assert r.status_code == 200, r.text
    grid = expected_punchcard(repos)
    assert r.json()["commits"] == grid
    assert r.json()["total"] == sum(len(git_commits(p)) for p in repos)

    r = await c.get(f"{base}/commit-size", params=query)
    assert r.status_code == 200, r.text
    body = r.json()
    sizes = expected_commit_size(repos)
    _close({k: body[k] for k in sizes}, sizes)

    r = await c.get(f"{base}/languages", params=query)
    assert r.status_code == 200, r.text
    got = {row.pop("language"): row for row in r.json()["languages"]}
    assert got == expected_languages(repos)
    assert r.json()["mapping"].startswith("enry ")


@pytest.fixture
async def two_repos(
    metre_api: Pipeline, awkward_repo: Path, history_factory: Callable[..., Path]
) -> tuple[Pipeline, dict[int, Path]]:
    generated = history_factory(commits=120, seed=11)
    ids = {await metre_api.ingest(awkward_repo): awkward_repo}
    ids[await metre_api.ingest(generated)] = generated
    return metre_api, ids


async def test_catalogue_metrics_match_git(two_repos: tuple[Pipeline, dict[int, Path]]) -> None:
    api, ids = two_repos
    for rid, path in ids.items():
        await _check(api, f"/api/v1/repos/{rid}/metrics", {}, [path])
    paths = list(ids.values())
    await _check(api, "/api/v1/metrics", {}, paths)
    await _check(api, "/api/v1/metrics", {"repos": ",".join(map(str, ids))}, paths)
    first = next(iter(ids))
    await _check(api, "/api/v1/metrics", {"repos": f"{first},{first}"}, [ids[first]])


async def test_org_activity_sums_repositories(
    two_repos: tuple[Pipeline, dict[int, Path]],
) -> None:
    api, ids = two_repos
    days: dict[Any, dict[str, int]] = {}
    for path in ids.values():
        for day, row in expected_activity(path).items():
            acc = days.setdefault(day, dict.fromkeys(row, 0))
            for k, v in row.items():
                acc[k] += v
    for granularity in ("day", "week", "month"):
        r = await api.client.get("/api/v1/metrics/activity", params={"granularity": granularity})
        assert r.status_code == 200, r.text
        assert r.json()["series"] == rollup(days, granularity)
        prov = r.json()["provenance"]
        assert [s["repo_id"] for s in prov["repos"]] == sorted(ids)
        assert prov["metric"] == "activity"


async def test_provenance_etag_and_304(metre_api: Pipeline, tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "live")
    b.write("a.py", b"print(1)\n")
    b.commit("one")
    rid = await metre_api.ingest(b.path)
    c = metre_api.client
    url = f"/api/v1/repos/{rid}/metrics/languages"

    r1 = await c.get(url)
    assert r1.status_code == 200
    tag = r1.headers["etag"]
    assert r1.headers["cache-control"] == "private, max-age=0, must-revalidate"
    prov = r1.json()["provenance"]
    repo = (await c.get(f"/api/v1/repos/{rid}")).json()
    assert prov["repo_id"] == rid
    assert prov["head"] == repo["head"] == b.head()
    assert prov["watermark"] is not None
    assert (prov["metric"], prov["version"], prov["params"]) == ("languages", 4, {})

    r2 = await c.get(url, headers={"If-None-Match": tag})
    assert r2.status_code == 304
    assert r2.content == b""
    assert r2.headers["etag"] == tag
    r3 = await c.get(url, headers={"If-None-Match": f'"other", W/{tag}'})
    assert r3.status_code == 304
    r4 = await c.get(url, headers={"If-None-Match": '"other"'})
    assert r4.status_code == 200
    assert r4.content == r1.content

    # Other parameters, another form, another metric: other ETags.
    tags = {tag}
    for other in (
        f"/api/v1/repos/{rid}/metrics/contributors?gap_days=5",
        f"/api/v1/repos/{rid}/metrics/contributors?gap_days=6",
        f"/api/v1/metrics/languages?repos={rid}",
        f"/api/v1/repos/{rid}/metrics/activity",
        f"/api/v1/repos/{rid}/metrics/authors",
    ):
        r = await c.get(other)
        assert r.status_code == 200, r.text
        tags.add(r.headers["etag"])
    assert len(tags) == 6

    # A new commit moves the watermark: the old ETag no longer matches, the result is new.
    b.write("b.py", b"x = 1\ny = 2\n")
    b.commit("two")
    await metre_api.poll(rid)
    r5 = await c.get(url, headers={"If-None-Match": tag})
    assert r5.status_code == 200
    assert r5.headers["etag"] != tag
    assert r5.json()["languages"] == [
        {"language": "Python", "changes": 2, "added": 3, "removed": 0, "lines": 3, "bytes": 21}
    ]
    p5 = r5.json()["provenance"]
    assert p5["head"] == b.head()
    assert p5["watermark"] > prov["watermark"]


async def test_errors(metre_api: Pipeline, awkward_repo: Path) -> None:
    rid = await metre_api.ingest(awkward_repo)
    c = metre_api.client
    for path in ("contributors", "punchcard", "commit-size", "languages", "activity", "authors"):
        r = await c.get(f"/api/v1/repos/{rid + 1}/metrics/{path}")
        assert r.status_code == 404, path
        assert r.json()["error"]["message"] == f"no repository with id {rid + 1}"
    r = await c.get("/api/v1/metrics/punchcard", params={"repos": f"{rid},{rid + 7}"})
    assert r.status_code == 404
    assert str(rid + 7) in r.json()["error"]["message"]
    for bad in ("x", "1,,2", "", "0", "-3"):
        r = await c.get("/api/v1/metrics/languages", params={"repos": bad})
        assert r.status_code == 422, bad
        assert r.json()["error"]["status"] == 422
    for params in ({"gap_days": "-1"}, {"gap_days": "x"}, {"granularity": "year"}):
        r = await c.get(f"/api/v1/repos/{rid}/metrics/contributors", params=params)
        assert r.status_code == 422, params
    r = await c.get("/api/v1/metrics/activity", params={"from": "2024-02-02", "to": "2024-01-01"})
    assert r.status_code == 422


async def test_catalogue_lists_every_metric(metre_api: Pipeline, awkward_repo: Path) -> None:
    r = await metre_api.client.get("/api/v1/metrics")
    assert r.status_code == 200
    entries = {m["name"]: m for m in r.json()["metrics"]}
    assert set(NAMES) <= set(entries)
    for m in entries.values():
        assert m["definition"]
        assert m["unit"]
        assert isinstance(m["version"], int)
        assert m["version"] >= 1
        for p in m["parameters"]:
            assert set(p) >= {"name", "type", "default", "description"}
    params = {p["name"]: p["default"] for p in entries["contributors"]["parameters"]}
    assert params == {
        "granularity": "month", "gap_days": 90, "policy": None, "merges": "include",
        "empty": "include", "bots": "include",
    }  # fmt: skip
    assert entries["activity"]["organisation_wide"] is True
    assert entries["authors"]["organisation_wide"] is False

    # Every result's provenance names the catalogue's version and the defaults used.
    rid = await metre_api.ingest(awkward_repo)
    for name in NAMES:
        r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/{name}")
        assert r.status_code == 200, name
        prov = r.json()["provenance"]
        assert prov["metric"] == name
        assert prov["version"] == entries[name]["version"]
        defaults = {p["name"]: p["default"] for p in entries[name]["parameters"]}
        assert prov["params"] == defaults, name


async def test_metric_update_events(
    two_repos: tuple[Pipeline, dict[int, Path]],
) -> None:
    api, ids = two_repos
    updates: list[dict[str, Any]] = await api.updates()  # JSON records
    assert updates
    for rid, path in ids.items():
        mine = [u for u in updates if u["repo_id"] == rid]
        assert sum(u["commits"] for u in mine) == len(git_commits(path))
        assert {u["v"] for u in mine} == {1}
        assert {u["type"] for u in mine} == {"metric-update"}
        last = max(mine, key=lambda u: u["generation"])
        assert set(NAMES) <= set(last["metrics"])
        r = await api.client.get(f"/api/v1/repos/{rid}/metrics/punchcard")
        assert r.json()["provenance"]["watermark"] == last["watermark"]
