"""`metre notifier` as real processes over the real broker and PostgreSQL: two replicas, one
digest; the truck factor it reports is the git CLI's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from testkit.broker import free_port
from testkit.oracle import wait_ingested
from testkit.roles import Roles, role_env, wait_ready
from tests.api.files_oracle import expected_ownership
from tests.api.test_notifications import A, two_owners
from tests.fixtures.gitrepo import git_commits
from tests.fixtures.receiver import receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_two_notifiers_tell_a_truck_factor_fall_once(
    tmp_path: Path, db_dsn: str, kafka_bootstrap: str
) -> None:
    g = two_owners(tmp_path / "repo")
    env = role_env(
        tmp_path / "data",
        db_dsn,
        kafka_bootstrap,
        METRE_ALLOWED_SCHEMES="https,http",
        METRE_ALLOW_PRIVATE_HOSTS="true",
        METRE_NOTIFY_CHECK_INTERVAL="0.3",
        METRE_NOTIFY_DIGEST_INTERVAL="0",
        METRE_POLL_INTERVAL="3600",
    )
    roles = Roles(env, tmp_path)
    roles.migrate()
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    roles.start("notifier-1", "notifier")
    roles.start("notifier-2", "notifier")
    try:
        async with (
            receiver() as hook,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api,
        ):
            await wait_ready(api, roles)
            made = await api.post("/api/v1/repos", json={"url": str(g.path)})
            assert made.status_code == 201, made.text
            repo_id = made.json()["id"]
            await wait_ingested(api, repo_id, len(git_commits(g.path)), timeout=120)
            t = await api.post(
                "/api/v1/notifications/targets", json={"kind": "slack", "url": hook.url}
            )
            assert t.status_code == 201, t.text
            r = await api.post(
                "/api/v1/notifications/rules",
                json={"kind": "truck_factor", "target_id": t.json()["id"], "repo_id": repo_id},
            )
            assert r.status_code == 201, r.text
            # Wait for the baseline before the fall.
            async with asyncio.timeout(60):
                while True:
                    roles.assert_alive()
                    logs = roles.log("notifier-1") + roles.log("notifier-2")
                    assert "Traceback" not in logs, logs
                    base = await api.get(f"/api/v1/repos/{repo_id}/metrics/truck-factor")
                    if base.json()["truck_factor"] == 2:
                        break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # a few evaluation passes: the baseline is recorded

            g.remove("c.txt")
            g.remove("d.txt")
            g.write("e.txt", b"e\n" * 5)
            g.commit("Ann takes over", author=A)
            want = len(expected_ownership(g.path)[1])
            assert (await api.post(f"/api/v1/repos/{repo_id}/poll")).status_code == 202
            await wait_ingested(api, repo_id, len(git_commits(g.path)), timeout=120)
            async with asyncio.timeout(60):
                while not hook.got:
                    roles.assert_alive()
                    await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # a second replica would have spoken by now
            assert len(hook.got) == 1, hook.got
            text = hook.got[0]["text"]
            assert f"truck factor fell from 2 to {want}" in text
            assert text.count("truck factor fell") == 1, text  # raised by one replica only
            deliveries = (await api.get("/api/v1/notifications/deliveries")).json()
            assert [d["status"] for d in deliveries["deliveries"]] == ["delivered"]
    finally:
        codes = roles.stop_all()
    assert all(code == 0 for code in codes.values()), codes
