"""Languages by Linguist's rules, and hotspots and ownership without vendored, generated and
lock files, end to end against the git-CLI oracle (docs/metrics.md, "languages", "hotspots")."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.oracle import expected_languages
from testkit.pipeline import Pipeline
from tests.api.files_oracle import skipped
from tests.api.test_files_metrics import check_hotspots, check_ownership, get
from tests.fixtures.linguist import SKIPPED, build_linguist_repo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def linguist_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_linguist_repo(tmp_path_factory.mktemp("linguist") / "repo")


async def test_languages_are_linguists(metre_api: Pipeline, linguist_repo: Path) -> None:
    repo_id = await metre_api.ingest(linguist_repo)
    r = await metre_api.client.get(f"/api/v1/repos/{repo_id}/metrics/languages")
    assert r.status_code == 200, r.text
    assert r.json()["mapping"].startswith("enry ")
    got = {row.pop("language"): row for row in r.json()["languages"]}
    assert got == expected_languages([linguist_repo])
    # Programming and markup only: no lock (TOML), JSON, YAML, Markdown, SQL (data) rows;
    # `*.inc` is C++ (Linguist), not POVRay; vendored JavaScript is left out.
    assert set(got) == {"Python", "C++", "HTML"}
    assert got["Python"]["lines"] == 9  # the merge's resolution decided it


async def test_hotspots_and_ownership_skip_generated_vendored_and_locks(
    metre_api: Pipeline, linguist_repo: Path
) -> None:
    assert all(skipped(p) for p in SKIPPED)
    repo_id = await metre_api.ingest(linguist_repo)
    await check_hotspots(metre_api, repo_id, linguist_repo, 365)
    await check_hotspots(metre_api, repo_id, linguist_repo, 2)
    await check_ownership(metre_api, repo_id, linguist_repo)
    hot = await get(metre_api, repo_id, "hotspots", limit=1000)
    paths = [f["path"] for f in hot["files"]]
    assert paths[0] == "src/app.py"
    assert not set(paths) & set(SKIPPED)
    # `limit` counts the files kept, not the rows before the skip.
    top = await get(metre_api, repo_id, "hotspots", limit=2)
    assert [f["path"] for f in top["files"]] == paths[:2]
    owned = await get(metre_api, repo_id, "ownership", limit=1000)
    assert not {f["path"] for f in owned["files"]} & set(SKIPPED)
    assert "README.md" in {f["path"] for f in owned["files"]}  # documentation is owned
