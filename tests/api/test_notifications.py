"""Notifications end to end: rules set over the API, the notifier over the real pipeline and
PostgreSQL, digests POSTed to a real HTTP receiver on loopback. The truck factors it reports
are the git CLI's (tests/api/files_oracle.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from metre.api.app import create_app
from metre.contracts.bus import Message
from metre.processors.notifier import Notifier, NotifyConfig
from metre.settings import Settings
from testkit.gitbuilder import GitRepoBuilder
from testkit.pipeline import COMMITS, UPDATES, Pipeline
from tests.api.files_oracle import expected_ownership
from tests.fixtures.receiver import receiver

pytestmark = pytest.mark.integration

LOOPBACK = Settings(allowed_schemes="https,http", allow_private_hosts=True)
A = ("Ann", "ann@example.com")
B = ("Bob", "bob@example.com")


@contextlib.asynccontextmanager
async def api(metre: Pipeline, settings: Settings = LOOPBACK) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings, metre.store))
    async with httpx.AsyncClient(transport=transport, base_url="http://metre") as client:
        yield client


def notifier(metre: Pipeline, settings: Settings = LOOPBACK, **kw: Any) -> Notifier:
    config = NotifyConfig(policy=settings.url_policy, **kw)
    return Notifier(metre.store, config, bus=metre.bus, updates_topic=UPDATES, group="t-notify")


async def target(client: httpx.AsyncClient, url: str, kind: str = "slack") -> int:
    answer = await client.post("/api/v1/notifications/targets", json={"kind": kind, "url": url})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


async def rule(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/notifications/rules", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def two_owners(path: Path) -> GitRepoBuilder:
    """Ann owns a and b, Bob owns c and d: a truck factor of 2."""
    g = GitRepoBuilder(path)
    for name, who in (("a", A), ("b", A), ("c", B), ("d", B)):
        g.write(f"{name}.txt", f"{name}\n".encode() * 5)
        g.commit(f"add {name}", author=who)
    return g


async def test_truck_factor_fall_is_told_in_one_digest(metre_api: Pipeline, tmp_path: Path) -> None:
    g = two_owners(tmp_path / "repo")
    repo_id = await metre_api.ingest(g.path)
    assert len(expected_ownership(g.path)[1]) == 2
    async with receiver() as hook, api(metre_api) as client:
        tid = await target(client, hook.url)
        await rule(client, kind="truck_factor", target_id=tid)
        stop = asyncio.Event()
        n = notifier(metre_api, check_interval=0.1, digest_interval=0)
        running = asyncio.create_task(n.run(stop))
        try:
            async with asyncio.timeout(20):
                while n.checks < 2:  # the baseline is recorded
                    await asyncio.sleep(0.05)
            assert hook.got == []  # nothing fell yet

            # Ann rewrites Bob's part: only Ann is left at head.
            g.remove("c.txt")
            g.remove("d.txt")
            g.write("e.txt", b"e\n" * 5)
            g.commit("Ann takes over", author=A)
            await metre_api.poll(repo_id)
            want = len(expected_ownership(g.path)[1])
            assert want == 1
            async with asyncio.timeout(20):
                while not hook.got:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
        [body] = hook.got
        assert "truck factor fell from 2 to 1" in body["text"]
        assert "ann@example.com" in body["text"]
        assert hook.headers[0]["x-metre-delivery"].isdigit()
        served = (await client.get(f"/api/v1/repos/{repo_id}/metrics/truck-factor")).json()
        assert served["truck_factor"] == want
        [delivery] = (await client.get("/api/v1/notifications/deliveries")).json()["deliveries"]
        assert delivery["status"] == "delivered"
        assert delivery["alerts"] == 1
        # The secret in the URL's path is never shown.
        [shown] = (await client.get("/api/v1/notifications/targets")).json()["targets"]
        assert "secret" not in shown["url"]


async def test_failing_repositories_are_grouped_and_recoveries_wait_for_the_interval(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    missing = [tmp_path / "gone-1", tmp_path / "gone-2"]
    ids = [(await metre_api.store.add_repo(str(p), None)).id for p in missing]
    for _ in ids:
        claimed = await metre_api.store.claim_due_repo(60)
        assert claimed is not None
        await metre_api.poller.poll(claimed)
    for i in ids:
        repo = await metre_api.store.get_repo(i)
        assert repo is not None
        assert repo.state == "failed"
    async with receiver() as hook, api(metre_api) as client:
        tid = await target(client, hook.url, kind="mattermost")
        await rule(client, kind="failing", target_id=tid, threshold=30)
        n = notifier(metre_api, digest_interval=3600)
        now = datetime.now(UTC)
        assert await n.check_once(now) == []  # failing for seconds, not 30 minutes
        later = now + timedelta(minutes=31)
        raised = await n.check_once(later)
        assert sorted(a.repo_id for a in raised if a.repo_id) == ids
        assert await n.check_once(later + timedelta(minutes=1)) == []  # still failing: quiet
        async with httpx.AsyncClient() as http:
            assert await n.deliver_once(http, later) == 1
            [body] = hook.got
            assert body["username"] == "metre"
            assert body["text"].count("has been failing for") == 2

            two_owners(missing[0])  # the first one can be fetched now
            await metre_api.poll(ids[0])
            recovered = await n.check_once(later + timedelta(minutes=2))
            assert [(a.repo_id, a.resolved) for a in recovered] == [(ids[0], True)]
            # Within the digest interval the recovery waits ...
            assert await n.deliver_once(http, later + timedelta(minutes=3)) == 0
            assert len(hook.got) == 1
            # ... and leaves with the next digest.
            assert await n.deliver_once(http, later + timedelta(minutes=61)) == 1
        assert "polls again" in hook.got[1]["text"]
        alerts = (await client.get("/api/v1/notifications/alerts")).json()["alerts"]
        assert [a["resolved"] for a in alerts] == [True, False, False]
        assert all(a["delivery_id"] is not None for a in alerts)


async def test_a_failing_target_is_retried_with_backoff_then_given_up(
    metre_api: Pipeline,
) -> None:
    async with receiver() as hook, api(metre_api) as client:
        tid = await target(client, hook.url, kind="webhook")
        await rule(client, kind="dead_letters", target_id=tid)
        n = notifier(metre_api, digest_interval=0, max_attempts=3)
        now = datetime.now(UTC)
        await n.check_once(now)  # baseline: no dead letters
        await metre_api.bus.publish(COMMITS, [Message(b"1", b"not an event")])
        async with asyncio.timeout(20):
            while (await metre_api.store.dead_letter_summary(0))[0] == 0:
                await asyncio.sleep(0.05)
        [alert] = await n.check_once(now)
        assert alert.kind == "dead_letters"
        hook.answers = [500, 503, 500]
        async with httpx.AsyncClient() as http:
            assert await n.deliver_once(http, now) == 0
            [d] = (await client.get("/api/v1/notifications/deliveries")).json()["deliveries"]
            assert (d["status"], d["attempts"]) == ("pending", 1)
            assert "500" in d["last_error"]
            retry_at = datetime.fromisoformat(d["next_attempt_at"])
            assert retry_at == now + timedelta(seconds=5)
            assert await n.deliver_once(http, now + timedelta(seconds=4)) == 0
            assert len(hook.got) == 1  # not due yet
            assert await n.deliver_once(http, now + timedelta(seconds=5)) == 0
            [d] = (await client.get("/api/v1/notifications/deliveries")).json()["deliveries"]
            assert datetime.fromisoformat(d["next_attempt_at"]) == now + timedelta(seconds=15)
            assert await n.deliver_once(http, now + timedelta(seconds=15)) == 0
        [d] = (await client.get("/api/v1/notifications/deliveries")).json()["deliveries"]
        assert (d["status"], d["attempts"]) == ("failed", 3)
        assert len(hook.got) == 3
        body = hook.got[0]
        assert body["type"] == "notification-digest"
        assert body["alerts"][0]["kind"] == "dead_letters"
        assert "1 new dead letter" in body["alerts"][0]["message"]


async def test_lag_rule_fires_and_resolves(metre_api: Pipeline) -> None:
    from metre.processors.lag import GroupLag

    async with receiver() as hook, api(metre_api) as client:
        tid = await target(client, hook.url, kind="webhook")
        await rule(client, kind="lag", target_id=tid, threshold=2)
        config = NotifyConfig(policy=LOOPBACK.url_policy, digest_interval=0)
        group = "t-lag-readers"
        lag = GroupLag(metre_api.bus, COMMITS, group)
        n = Notifier(metre_api.store, config, lag=lag)
        consumer = metre_api.bus.consumer([COMMITS], group)
        await consumer.start()
        try:
            before = await lag()
            await metre_api.bus.publish(COMMITS, [Message(b"7", b"x")] * 3)
            assert await lag() == (before or 0) + 3
            records: list[Any] = []
            async with asyncio.timeout(10):
                while sum(1 for _ in records) < (before or 0) + 3:
                    records += await consumer.fetch(100, 0.1)
            await consumer.commit(records[: len(records) - 3])
            [fired] = await n.check_once()
            assert not fired.resolved
            assert "3 events behind" in fired.message
            await consumer.commit(records)
            [cleared] = await n.check_once()
            assert cleared.resolved
        finally:
            await consumer.stop()


async def test_targets_obey_the_address_rules(metre_api: Pipeline) -> None:
    async with api(metre_api, Settings()) as client:  # the defaults: public https only
        for url, setting in (
            ("http://127.0.0.1:9/hook", "METRE_ALLOWED_SCHEMES"),
            ("https://127.0.0.1/hook", "METRE_ALLOW_PRIVATE_HOSTS"),
            ("https://[::ffff:10.0.0.1]/hook", "METRE_ALLOW_PRIVATE_HOSTS"),
            ("https://169.254.169.254/latest", "METRE_ALLOW_PRIVATE_HOSTS"),
            ("file:///etc/passwd", "METRE_ALLOWED_SCHEMES"),
            ("ssh://git@example.com/x", "METRE_ALLOWED_SCHEMES"),
        ):
            answer = await client.post(
                "/api/v1/notifications/targets", json={"kind": "webhook", "url": url}
            )
            assert answer.status_code == 422, (url, answer.text)
            assert setting in answer.json()["error"]["message"], url
        assert (await client.get("/api/v1/notifications/targets")).json()["targets"] == []

    # Registered while allowed, refused at delivery once the rules are stricter: no request.
    async with receiver() as hook, api(metre_api) as client:
        tid = await target(client, hook.url, kind="webhook")
        await rule(client, kind="dead_letters", target_id=tid)
    strict = notifier(metre_api, Settings(), digest_interval=0)
    now = datetime.now(UTC)
    await strict.check_once(now)
    await metre_api.bus.publish(COMMITS, [Message(b"1", b"poison")])
    async with asyncio.timeout(20):
        while (await metre_api.store.dead_letter_summary(0))[0] == 0:
            await asyncio.sleep(0.05)
    assert len(await strict.check_once(now)) == 1
    async with httpx.AsyncClient() as http:
        assert await strict.deliver_once(http, now) == 0
    [d] = await strict.notes.list_deliveries(10)
    assert d["status"] == "failed"
    assert "METRE_ALLOWED_SCHEMES" in d["last_error"]
    assert hook.got == []


async def test_rule_and_target_errors(metre_api: Pipeline) -> None:
    async with api(metre_api) as client:
        bad = await client.post(
            "/api/v1/notifications/rules", json={"kind": "failing", "target_id": 99}
        )
        assert bad.status_code == 422
        assert "no notification target 99" in bad.json()["error"]["message"]
        tid = await target(client, "http://127.0.0.1:9/x", kind="webhook")
        scoped = await client.post(
            "/api/v1/notifications/rules",
            json={"kind": "lag", "target_id": tid, "repo_id": 1},
        )
        assert scoped.status_code == 422
        unknown = await client.post(
            "/api/v1/notifications/rules", json={"kind": "nope", "target_id": tid}
        )
        assert unknown.status_code == 422
        made = await rule(client, kind="stale", target_id=tid)
        assert made["threshold"] == 24.0
        assert (await client.delete(f"/api/v1/notifications/rules/{made['id']}")).status_code == 204
        assert (await client.delete(f"/api/v1/notifications/rules/{made['id']}")).status_code == 404
        assert (await client.delete(f"/api/v1/notifications/targets/{tid}")).status_code == 204
        assert (await client.get("/api/v1/notifications/rules")).json()["rules"] == []


async def test_a_lagging_repository_is_told_with_its_reason(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    repo_id = await metre_api.ingest(two_owners(tmp_path / "repo").path)
    async with receiver() as hook, api(metre_api) as client:
        tid = await target(client, hook.url, kind="webhook")
        made = await rule(client, kind="lagging", target_id=tid, repo_id=repo_id)
        assert made["threshold"] == 0.0
        n = notifier(metre_api, digest_interval=0)
        assert await n.check_once() == []
        # What the freshness check writes (its own tests: tests/api/test_pipeline.py).
        reason = "head 0123abc stored 3 poll intervals ago is not applied"
        flag = "UPDATE repos SET lagging_reason = $2 WHERE id = $1"
        await metre_api.store.pool.execute(flag, repo_id, reason)
        [alert] = await n.check_once()
        assert (alert.repo_id, alert.resolved) == (repo_id, False)
        assert reason in alert.message
        await metre_api.store.pool.execute(flag, repo_id, None)
        [cleared] = await n.check_once()
        assert cleared.resolved
        async with httpx.AsyncClient() as http:
            assert await n.deliver_once(http) == 1
        [body] = hook.got
        assert [a["resolved"] for a in body["alerts"]] == [False, True]
