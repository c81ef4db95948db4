"""`limit` / `offset` / `total` on the repository list and on authors (real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.pipeline import Pipeline
from tests.api.test_policy import build_policy_history

pytestmark = pytest.mark.integration


async def test_repository_list_pages(metre_api: Pipeline) -> None:
    for n in range(5):
        await metre_api.store.add_repo(f"https://example.org/r{n}.git", None)
    c = metre_api.client
    whole = (await c.get("/api/v1/repos")).json()
    assert (whole["total"], whole["limit"], whole["offset"]) == (5, None, 0)
    ids = [r["id"] for r in whole["repos"]]
    assert ids == sorted(ids)
    assert len(ids) == 5
    seen = []
    for offset in range(0, 6, 2):
        body = (await c.get("/api/v1/repos", params={"limit": 2, "offset": offset})).json()
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, offset)
        seen += [r["id"] for r in body["repos"]]
    assert seen == ids
    assert (await c.get("/api/v1/repos", params={"offset": 9})).json()["repos"] == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        r = await c.get("/api/v1/repos", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["error"]["status"] == 422


async def test_authors_page(metre_api: Pipeline, tmp_path: Path) -> None:
    rid = await metre_api.ingest(build_policy_history(tmp_path / "h"))
    c = metre_api.client
    url = f"/api/v1/repos/{rid}/metrics/authors"
    whole = (await c.get(url)).json()
    assert whole["total"] == len(whole["authors"]) >= 4
    pages = []
    for offset in range(0, whole["total"], 3):
        body = (await c.get(url, params={"limit": 3, "offset": offset})).json()
        assert body["total"] == whole["total"]
        assert body["provenance"]["params"]["limit"] == 3
        assert body["provenance"]["params"]["offset"] == offset
        pages += body["authors"]
    assert pages == whole["authors"]
    github = (await c.get(url, params={"policy": "github", "limit": 1})).json()
    assert github["total"] == whole["total"] - 2  # the merge-only and empty-only authors
    assert len(github["authors"]) == 1
    for bad in ({"limit": 0}, {"offset": -2}):
        assert (await c.get(url, params=bad)).status_code == 422
