"""Removing a repository, end to end over the real broker and PostgreSQL: distributed role
processes ingest two repositories, `metre remove` takes one away, and then every fact, metric
row and metric answer equals a fresh ingest of the other alone; a consumer of the topics sees a
retraction of every removed commit and the removal notice; the mirror is gone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from metre.contracts.events import RetractEvent, decode_event
from metre.ingest.kafka_bus import KafkaBus
from metre.processors.store import PgStore
from testkit.broker import free_port
from testkit.dump import differences, dump
from testkit.oracle import wait_ingested
from testkit.pipeline import pipeline
from testkit.roles import Roles, role_env, wait_ready
from tests.fixtures.gitrepo import git_commits
from tests.fixtures.postgres import MakeDatabase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORG_METRICS = ("activity", "contributors", "punchcard", "commit-size", "languages")
REPO_METRICS = (
    "activity", "authors", "contributors", "punchcard", "commit-size", "languages", "files",
    "hotspots", "ownership", "truck-factor", "coupling",
)  # fmt: skip


def _without_provenance(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _without_provenance(v) for k, v in body.items() if k != "provenance"}
    return body


async def metric_answers(api: httpx.AsyncClient, repo_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in ORG_METRICS:
        r = await api.get(f"/api/v1/metrics/{m}")
        assert r.status_code == 200, (m, r.text)
        out[f"org/{m}"] = _without_provenance(r.json())
    for m in REPO_METRICS:
        r = await api.get(f"/api/v1/repos/{repo_id}/metrics/{m}")
        assert r.status_code == 200, (m, r.text)
        out[m] = _without_provenance(r.json())
    return out


async def topic_records(
    bootstrap: str, topic: str, until: Callable[[list[bytes]], bool]
) -> list[bytes]:
    """Every record of `topic` from the start, read by a fresh group until `until` holds."""
    bus = KafkaBus(bootstrap, partitions=4)
    await bus.start()
    consumer = bus.consumer([topic], f"reader-{free_port()}")
    await consumer.start()
    got: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    try:
        while not until(got):
            assert loop.time() < deadline, f"{topic}: not seen within 60 s ({len(got)} records)"
            got += [r.value for r in await consumer.fetch(10_000, 0.5)]
    finally:
        await consumer.stop()
        await bus.stop()
    return got


async def test_remove_leaves_exactly_a_fresh_ingest_of_the_other_and_tells_the_topics(
    tmp_path: Path,
    db_dsn: str,
    make_database: MakeDatabase,
    kafka_bootstrap: str,
    awkward_repo: Path,
    history_factory: Callable[..., Path],
) -> None:
    other = history_factory(commits=300, seed=3)
    env = role_env(tmp_path / "data", db_dsn, kafka_bootstrap)
    prefix = env["METRE_TOPIC_PREFIX"]
    roles = Roles(env, tmp_path)
    roles.migrate()
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            await wait_ready(api, roles, timeout=90)
            kept = (await api.post("/api/v1/repos", json={"url": str(awkward_repo)})).json()
            gone = (await api.post("/api/v1/repos", json={"url": str(other)})).json()
            await wait_ingested(api, kept["id"], len(git_commits(awkward_repo)), timeout=120)
            await wait_ingested(api, gone["id"], len(git_commits(other)), timeout=120)
            mirror = tmp_path / "data" / "mirrors" / f"{gone['id']}.git"
            assert mirror.is_dir()

            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "metre", "remove", "--api", base, str(other)],
                capture_output=True, text=True, timeout=60, env=env, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert f"repository {gone['id']} removed" in out.stdout
            assert (await api.get(f"/api/v1/repos/{gone['id']}")).status_code == 404
            r = await api.delete(f"/api/v1/repos/{gone['id']}")
            assert r.status_code == 404
            assert r.json()["error"]["message"]
            removed_answers = await metric_answers(api, kept["id"])

            # External consumers learn it: a retraction per commit, then the notice.
            shas = set(git_commits(other))

            def retracted(values: list[bytes]) -> set[str]:
                out = set()
                for v in values:
                    e = decode_event(v)
                    if isinstance(e, RetractEvent) and e.repo_id == gone["id"]:
                        out.add(e.sha)
                return out

            commits = await topic_records(
                kafka_bootstrap, f"{prefix}.commits", lambda vs: retracted(vs) == shas
            )
            assert retracted(commits) == shas
            notices = [
                orjson.loads(v)
                for v in await topic_records(
                    kafka_bootstrap,
                    f"{prefix}.metric-updates",
                    lambda vs: any(orjson.loads(v).get("removed") for v in vs),
                )
            ]
            notice = next(n for n in notices if n.get("removed"))
            assert (notice["repo_id"], notice["retracted"], notice["head"]) == (
                gone["id"],
                len(shas),
                None,
            )
            assert "activity" in notice["metrics"]

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while mirror.exists():
                assert loop.time() < deadline, "the mirror of the removed repository is still there"
                await asyncio.sleep(0.1)
            assert (tmp_path / "data" / "mirrors" / f"{kept['id']}.git").is_dir()
            roles.assert_alive()
    finally:
        codes = roles.stop_all()
        assert all(code == 0 for code in codes.values()), codes

    # A fresh database, the kept repository ingested alone: the same facts, rows and answers.
    fresh_dsn = await make_database()
    store = await PgStore.connect(fresh_dsn)
    try:
        async with pipeline(store, tmp_path / "fresh", partitions=4, chunk=7, batch=10) as p:
            row = await store.add_repo(str(awkward_repo), None)
            assert row.id == kept["id"]
            await p.sync(row.id)
            fresh_answers = await metric_answers(p.client, row.id)
    finally:
        await store.close()
    assert differences(await dump(db_dsn), await dump(fresh_dsn)) == {}
    assert removed_answers == fresh_answers
