"""`metre up` over a real broker (METRE_KAFKA_BOOTSTRAP) in this process: every role keeps
running until the stop (the in-process bus's trimming task has nothing to do there), so a
repository added is ingested."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from pydantic import SecretStr

from metre.runtime import run_all
from metre.settings import Settings
from testkit.oracle import wait_ingested
from tests.fixtures.gitrepo import git_commits


async def test_metre_up_over_kafka_runs_until_stopped(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str, awkward_repo: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(db_dsn),
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        port=0,
        rate_limit=0,
        allow_local_paths=True,
        poll_interval=1,
    )
    stop, up = asyncio.Event(), asyncio.get_running_loop().create_future()
    run = asyncio.create_task(run_all(settings, stop, up.set_result, port_search=0))
    try:
        url = await asyncio.wait_for(asyncio.shield(up), 60)
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            async with asyncio.timeout(60):
                while (ready := await api.get("/readyz")).json()["status"] != "ready":
                    await asyncio.sleep(0.2)
            assert ready.json()["checks"] == {"database": "up", "bus": "up", "data_loss": "up"}
            r = await api.post("/api/v1/repos", json={"url": str(awkward_repo)})
            assert r.status_code == 201, r.text
            await wait_ingested(api, r.json()["id"], len(git_commits(awkward_repo)), timeout=60)
        assert not run.done()
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
    assert not (settings.data_dir / "api.json").exists()
