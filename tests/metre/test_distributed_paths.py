"""Look-alike paths over the distributed roles: separate poller, processors and API processes,
the real Kafka-protocol broker and PostgreSQL, real HTTP (the path parameter URL-encoded as a
client sends it), checked against git (docs/metrics.md, "Paths")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from testkit.oracle import assert_api_matches_git, wait_ingested
from testkit.pipeline import Pipeline
from tests.api.files_oracle import expected_coupling
from tests.api.test_files_metrics import check_coupling, check_files, check_ownership
from tests.fixtures.gitrepo import git_commits
from tests.metre.test_distributed import cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_lookalike_paths_over_the_distributed_roles(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str, lookalike_repo: Path
) -> None:
    async with cluster(tmp_path, db_dsn, kafka_bootstrap) as (_, client):
        r = await client.post("/api/v1/repos", json={"url": str(lookalike_repo)})
        assert r.status_code == 201, r.text
        repo_id = r.json()["id"]
        await wait_ingested(client, repo_id, len(git_commits(lookalike_repo)), timeout=300)
        await assert_api_matches_git(client, repo_id, lookalike_repo)
        api = cast(Pipeline, SimpleNamespace(client=client))  # the checks use its client only
        await check_files(api, repo_id, lookalike_repo)
        await check_ownership(api, repo_id, lookalike_repo)
        await check_coupling(api, repo_id, lookalike_repo, 30)
        files, pairs = expected_coupling(lookalike_repo, 30)
        for name in files:
            r = await client.get(
                f"/api/v1/repos/{repo_id}/metrics/coupling",
                params={"path": name, "min_shared": 1},
            )
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            want = {(b if a == name else a): n for (a, b), n in pairs.items() if name in (a, b)}
            assert {p["path"]: p["shared"] for p in body["partners"]} == want, name
        r = await client.get(
            f"/api/v1/repos/{repo_id}/metrics/coupling", params={"path": "back\\slash.py"}
        )
        assert r.status_code == 422, r.text
