"""Files, hotspots, ownership, truck factor and coupling over the real pipeline (dulwich poller,
InMemoryBus, processor, PostgreSQL, the app), each against the git-CLI oracle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testkit.pipeline import Pipeline
from tests.api.files_oracle import (
    expected_coupling,
    expected_files,
    expected_hotspots,
    expected_ownership,
    merge_decided,
)
from tests.ingest.test_merge_files import build_code_merges

pytestmark = pytest.mark.integration

# Paths whose content at HEAD a merge decided beyond combining its sides: sums over non-merge
# commits miss them, merges' `merge_files` put them right (docs/metrics.md). In the awkward
# repository the hand-resolved conflict: 3 lines by the sum of non-merge changes, 4 in the blob.
# Every path, these included, must equal git exactly.
AWKWARD_MERGE_DECIDED = {"conflict.txt"}


@pytest.fixture
def generated(history_factory: Callable[..., Path]) -> Path:
    return history_factory(120, 7)


async def get(api: Pipeline, repo_id: int, metric: str, **params: Any) -> dict[str, Any]:
    r = await api.client.get(f"/api/v1/repos/{repo_id}/metrics/{metric}", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def all_files(api: Pipeline, repo_id: int, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = await get(api, repo_id, "files", limit=7, offset=len(out), **params)
        out += page["files"]
        if len(out) >= page["total"]:
            assert len(out) == page["total"]
            return out


async def check_files(api: Pipeline, repo_id: int, repo: Path) -> None:
    want = expected_files(repo)
    got = {f["path"]: f for f in await all_files(api, repo_id, sort="path")}
    assert set(got) == set(want)
    for p, w in want.items():
        g = got[p]
        assert (g["commits"], g["added"], g["removed"]) == (w["commits"], w["added"], w["removed"])
        assert g["authors"] == len(w["authors"]), p
        assert datetime.fromisoformat(g["last_change_at"]) == w["last_change_at"], p
        assert g["exists"] == w["exists"], p
        assert g["lines"] == w["lines"], p
        assert (g["bytes"], g["binary_at_head"]) == (w["bytes"], w["binary_at_head"]), p
        assert g["code_lines"] == w["code_lines"], p
    # Sorting: by path (code point order), and the descending sorts with path as tie-break.
    assert list(got) == sorted(want)
    by_commits = await all_files(api, repo_id, sort="commits")
    assert [f["path"] for f in by_commits] == sorted(want, key=lambda p: (-want[p]["commits"], p))
    by_churn = await all_files(api, repo_id, sort="churn")
    assert [f["path"] for f in by_churn] == sorted(
        want, key=lambda p: (-(want[p]["added"] + want[p]["removed"]), p)
    )
    by_lines = [f["path"] for f in await all_files(api, repo_id, sort="lines")]
    served = {f["path"]: f["lines"] for f in by_commits}
    assert by_lines == sorted(want, key=lambda p: (served[p] is None, -(served[p] or 0), p))
    present = await all_files(api, repo_id, sort="path", exists=True)
    assert [f["path"] for f in present] == sorted(p for p in want if want[p]["exists"])
    absent = await all_files(api, repo_id, sort="path", exists=False)
    assert [f["path"] for f in absent] == sorted(p for p in want if not want[p]["exists"])


async def check_hotspots(api: Pipeline, repo_id: int, repo: Path, days: int) -> None:
    first, last, ranked = expected_hotspots(repo, days)
    body = await get(api, repo_id, "hotspots", days=days, limit=1000)
    assert body["window"] == {"from": first.isoformat(), "to": last.isoformat(), "days": days}
    assert body["files"] == ranked


async def check_ownership(api: Pipeline, repo_id: int, repo: Path) -> None:
    owners, removed = expected_ownership(repo)
    got: dict[str, list[dict[str, Any]]] = {}
    offset = 0
    while True:
        page = await get(api, repo_id, "ownership", limit=11, offset=offset)
        assert page["total"] == len(owners)
        got.update({f["path"]: f["authors"] for f in page["files"]})
        offset += 11
        if offset >= page["total"]:
            break
    assert list(got) == sorted(owners)
    for p, want in owners.items():
        assert [a["email"] for a in got[p]] == [e for e, _ in want], p
        for a, (_, d) in zip(got[p], want, strict=True):
            assert a["doa"] == pytest.approx(d, abs=1e-9), p
    tf = await get(api, repo_id, "truck-factor")
    assert [r["email"] for r in tf["removed"]] == removed
    assert tf["truck_factor"] == len(removed)
    assert tf["files"] == len(owners)


async def check_coupling(api: Pipeline, repo_id: int, repo: Path, max_files: int) -> None:
    files, pairs = expected_coupling(repo, max_files)

    def deg(a: str, b: str) -> float:
        return pairs[(a, b)] / ((files[a] + files[b]) / 2)

    want = sorted(pairs, key=lambda ab: (-pairs[ab], -deg(*ab), ab))
    body = await get(api, repo_id, "coupling", max_files=max_files, min_shared=1, limit=1000)
    assert [(p["a"], p["b"]) for p in body["pairs"]] == want[:1000]
    for p in body["pairs"]:
        ab = (p["a"], p["b"])
        assert (p["shared"], p["commits_a"], p["commits_b"]) == (
            pairs[ab],
            files[p["a"]],
            files[p["b"]],
        )
        assert p["degree"] == pytest.approx(deg(*ab), abs=1e-9)
    two = await get(api, repo_id, "coupling", max_files=max_files, min_shared=2, limit=5)
    assert [(p["a"], p["b"]) for p in two["pairs"]] == [ab for ab in want if pairs[ab] >= 2][:5]
    # Partners of the file with the most pairs.
    if pairs:
        hub = max(sorted(files), key=lambda f: sum(f in ab for ab in pairs))
        body = await get(api, repo_id, "coupling", path=hub, max_files=max_files, min_shared=1)
        partners = [ab for ab in want if hub in ab][:100]
        assert [p["path"] for p in body["partners"]] == [
            ab[1] if ab[0] == hub else ab[0] for ab in partners
        ]
        assert body["commits"] == files[hub]
        for p, ab in zip(body["partners"], partners, strict=True):
            assert p["degree"] == pytest.approx(deg(*ab), abs=1e-9)
            assert p["commits"] == files[p["path"]]


async def test_awkward_repo(metre_api: Pipeline, awkward_repo: Path) -> None:
    assert merge_decided(awkward_repo) == AWKWARD_MERGE_DECIDED
    repo_id = await metre_api.ingest(awkward_repo)
    await check_files(metre_api, repo_id, awkward_repo)
    await check_hotspots(metre_api, repo_id, awkward_repo, 365)
    await check_hotspots(metre_api, repo_id, awkward_repo, 5)
    await check_ownership(metre_api, repo_id, awkward_repo)
    for n in (30, 3, 1):
        await check_coupling(metre_api, repo_id, awkward_repo, n)


async def test_generated_history(metre_api: Pipeline, generated: Path) -> None:
    # The generator's merges take the feature side's files wholesale (not git's merge), so
    # some paths are merge-decided (git names them): they too must match exactly.
    assert merge_decided(generated)
    repo_id = await metre_api.ingest(generated)
    await check_files(metre_api, repo_id, generated)
    await check_hotspots(metre_api, repo_id, generated, 365)
    await check_hotspots(metre_api, repo_id, generated, 3)
    await check_ownership(metre_api, repo_id, generated)
    await check_coupling(metre_api, repo_id, generated, 30)
    await check_coupling(metre_api, repo_id, generated, 2)


async def test_code_lines_where_merges_decide(metre_api: Pipeline, tmp_path: Path) -> None:
    """Code in six languages whose merges resolve conflicts, drop a side, change code
    themselves; a rename to another language's syntax and a symlink named like code: served
    code lines and hotspots equal Pygments' count of each blob at HEAD."""
    repo = build_code_merges(tmp_path / "code")
    assert merge_decided(repo)
    repo_id = await metre_api.ingest(repo)
    await check_files(metre_api, repo_id, repo)
    await check_hotspots(metre_api, repo_id, repo, 365)
    files = {f["path"]: f for f in await all_files(metre_api, repo_id, sort="path")}
    assert files["link.py"]["code_lines"] == 0
    assert files["tool.py"]["code_lines"] is None  # absent at head
    hot = {f["path"] for f in (await get(metre_api, repo_id, "hotspots"))["files"]}
    assert "link.py" not in hot
    assert "m.c" in hot


async def test_cached_until_the_watermark_moves(metre_api: Pipeline, awkward_repo: Path) -> None:
    repo_id = await metre_api.ingest(awkward_repo)
    first = await metre_api.client.get(f"/api/v1/repos/{repo_id}/metrics/truck-factor")
    tag = first.headers["etag"]
    again = await metre_api.client.get(
        f"/api/v1/repos/{repo_id}/metrics/truck-factor", headers={"If-None-Match": tag}
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("files", {"sort": "size"}),
        ("files", {"limit": 0}),
        ("hotspots", {"days": 0}),
        ("coupling", {"max_files": 101}),
        ("coupling", {"min_shared": 0}),
        ("ownership", {"offset": -1}),
    ],
)
async def test_bad_parameters(
    metre_api: Pipeline, awkward_repo: Path, metric: str, params: dict[str, Any]
) -> None:
    r = await metre_api.client.get(f"/api/v1/repos/1/metrics/{metric}", params=params)
    assert r.status_code == 422, r.text


async def test_unknown_repository(metre_api: Pipeline) -> None:
    for metric in ("files", "hotspots", "ownership", "truck-factor", "coupling"):
        r = await metre_api.client.get(f"/api/v1/repos/999/metrics/{metric}")
        assert r.status_code == 404, metric
