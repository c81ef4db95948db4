"""`GET /commits/{sha}` with a short sha, as git takes one: a unique prefix names its commit
(the same one `git rev-parse` names), an ambiguous one answers 409 with the candidates."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testkit.pipeline import Pipeline

pytestmark = pytest.mark.integration


def rev_parse(repo: Path, name: str) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def test_short_shas(metre_api: Pipeline, random_repo: Path) -> None:
    repo_id = await metre_api.ingest(random_repo)
    head = rev_parse(random_repo, "HEAD")
    for n in (7, 10, 12, 39, 40):
        prefix = head[:n]
        assert rev_parse(random_repo, prefix) == head
        r = await metre_api.client.get(f"/api/v1/repos/{repo_id}/commits/{prefix.upper()}")
        assert r.status_code == 200, (n, r.text)
        assert r.json()["sha"] == head
        assert (
            r.json()["files"]
            == (await metre_api.client.get(f"/api/v1/repos/{repo_id}/commits/{head}")).json()[
                "files"
            ]
        )
    # A prefix of nothing ingested, and one too short to look up.
    missing = "0000000" if not head.startswith("0000000") else "fffffff"
    assert (
        await metre_api.client.get(f"/api/v1/repos/{repo_id}/commits/{missing}")
    ).status_code == 404
    assert (
        await metre_api.client.get(f"/api/v1/repos/{repo_id}/commits/{head[:6]}")
    ).status_code == 422

    # Two commits sharing a 9-character prefix (rows copied under made-up names: a natural
    # collision needs tens of thousands of commits).
    twins = [head[:9] + "a" * 31, head[:9] + "b" * 31]
    for sha in twins:
        await metre_api.store.pool.execute(
            "INSERT INTO commits SELECT (jsonb_populate_record(c, jsonb_build_object('sha',"
            " $2::text))).* FROM commits c WHERE repo_id = $1 AND sha = $3",
            repo_id,
            sha,
            head,
        )
    r = await metre_api.client.get(f"/api/v1/repos/{repo_id}/commits/{head[:9]}")
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert all(t in message for t in twins)
    assert head in message
    assert (await metre_api.client.get(f"/api/v1/repos/{repo_id}/commits/{twins[0][:12]}")).json()[
        "sha"
    ] == twins[0]
