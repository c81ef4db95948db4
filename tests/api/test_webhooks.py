"""Push webhooks over the real pipeline: PostgreSQL, the in-process bus, the poller's own loop
(woken by the webhook, never by its schedule: the poll interval is an hour), the processor and
the app. A push to a local repository, a signed webhook, then the new commit's metrics equal
to the git CLI's; and every refusal, each of which changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from metre.api.app import create_app
from metre.api.webhooks import generic_signature
from metre.contracts.bus import InMemoryBus
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from metre.settings import Settings
from testkit.oracle import assert_api_matches_git, wait_ingested
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits

pytestmark = pytest.mark.integration

COMMITS, DLQ, UPDATES = "h.commits", "h.commits.dlq", "h.metric-updates"
SECRET = "correct horse battery staple"
TOKEN = "api-token-for-tests"


@dataclass
class Live:
    client: httpx.AsyncClient
    store: PgStore
    poller: Poller
    processor: Processor


@contextlib.asynccontextmanager
async def live_metre(store: PgStore, tmp_path: Path, **settings: Any) -> AsyncIterator[Live]:
    """Every role in this process, as `metre up` wires them, over the test database."""
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics([COMMITS, DLQ, UPDATES])
    config = PollerConfig(mirrors_dir=tmp_path / "mirrors", topic=COMMITS, poll_interval=3600)
    poller = Poller(bus, store, config)
    processor = Processor(
        bus, store, COMMITS, "h-processors", 500, DLQ, fetch_timeout=0.05, updates_topic=UPDATES
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(poller.run(stop)), asyncio.create_task(processor.run(stop))]
    base = {"data_dir": tmp_path, "allow_local_paths": True, "rate_limit": 0}
    app = create_app(Settings(**{**base, **settings}), store)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metre") as client:
            yield Live(client, store, poller, processor)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await bus.stop()


def _origin(tmp_path: Path) -> tuple[GitRepoBuilder, Path]:
    """A working repository with two commits, pushed to a bare `origin.git` (the registered
    repository, as a forge's would be)."""
    work = GitRepoBuilder(tmp_path / "work")
    work.write("README.md", b"hello\n")
    work.commit("first", date="2026-01-05T10:00:00+02:00")
    work.write("src/app.py", b"print('hi')\nprint('there')\n")
    work.commit("second", date="2026-01-06T11:00:00-05:00")
    origin = tmp_path / "origin.git"
    work.git("clone", "-q", "--bare", str(work.path), str(origin))
    work.git("remote", "add", "origin", str(origin))
    return work, origin


def _push(work: GitRepoBuilder, n: int, tag: str) -> str:
    for i in range(n):
        work.write(f"src/{tag}-{i}.txt", f"{tag} {i}\n".encode() * (i + 1))
        work.commit(f"{tag} {i}", date=f"2026-02-0{1 + i % 9}T09:00:00+01:00")
    work.git("push", "-q", "origin", "HEAD:main")
    return work.head()


def github_push(origin: Path) -> bytes:
    """A GitHub push payload (the fields metre reads, and some it does not)."""
    return orjson.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "repository": {
                "full_name": "acme/app",
                "clone_url": str(origin),
                "html_url": "https://github.invalid/acme/app",
            },
            "pusher": {"name": "ada"},
        }
    )


def github_headers(
    body: bytes, secret: str = SECRET, delivery: str | None = None
) -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": sig,
    }


async def _register(live: Live, origin: Path, **extra: Any) -> dict[str, Any]:
    r = await live.client.post("/api/v1/repos", json={"url": str(origin), **extra}, headers=_auth())
    assert r.status_code == 201, r.text
    repo: dict[str, Any] = r.json()
    assert "webhook_secret" not in r.text
    assert SECRET not in r.text
    await wait_ingested(live.client, repo["id"], len(git_commits(origin)), timeout=60)
    return repo


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}


async def _deliveries(store: PgStore) -> int:
    n: int = await store.pool.fetchval("SELECT count(*) FROM webhook_deliveries")
    return n


async def _served_after_push(live: Live, repo_id: int, origin: Path) -> None:
    await wait_ingested(live.client, repo_id, len(git_commits(origin)), timeout=60)
    await assert_api_matches_git(live.client, repo_id, origin)


async def test_github_push_webhook_polls_at_once_and_metrics_match_git(
    store: PgStore, tmp_path: Path
) -> None:
    work, origin = _origin(tmp_path)
    # Writes need a token here: the webhook gets through on its signature alone.
    async with live_metre(store, tmp_path, api_tokens=TOKEN) as live:
        repo = await _register(live, origin, webhook_secret=SECRET)
        assert repo["webhook"] is True
        listed = (await live.client.get("/api/v1/repos")).text
        assert SECRET not in listed
        polls = live.poller.polls

        head = _push(work, 3, "gh")
        body = github_push(origin)
        r = await live.client.post(
            "/api/v1/hooks/github", content=body, headers=github_headers(body)
        )
        assert r.status_code == 202, r.text
        assert r.json()["polled"] == [repo["id"]]
        await _served_after_push(live, repo["id"], origin)
        assert (await live.client.get(f"/api/v1/repos/{repo['id']}")).json()["head"] == head
        assert live.poller.polls == polls + 1  # one poll, woken by the webhook

        # The same delivery again is a replay: refused, nothing polled.
        before = (await live.client.get(f"/api/v1/repos/{repo['id']}")).json()
        r2 = await live.client.post(
            "/api/v1/hooks/github",
            content=body,
            headers=github_headers(body, delivery=r.json()["delivery"]),
        )
        assert r2.status_code == 409, r2.text
        assert "replay" in r2.json()["error"]["message"]
        assert (await live.client.get(f"/api/v1/repos/{repo['id']}")).json() == before
        assert await _deliveries(live.store) == 1


@pytest.mark.parametrize("provider", ["gitlab", "gitea", "generic"])
async def test_other_providers_push_webhooks(store: PgStore, tmp_path: Path, provider: str) -> None:
    work, origin = _origin(tmp_path)
    async with live_metre(store, tmp_path) as live:
        repo = await _register(live, origin, webhook_secret=SECRET)
        _push(work, 2, provider)
        delivery = str(uuid.uuid4())
        if provider == "gitlab":
            body = orjson.dumps(
                {
                    "object_kind": "push",
                    "project": {"git_http_url": f"file://{origin}", "web_url": "x"},
                }
            )
            headers = {
                "x-gitlab-event": "Push Hook",
                "x-gitlab-token": SECRET,
                "x-gitlab-event-uuid": delivery,
            }
        elif provider == "gitea":
            body = orjson.dumps({"repository": {"clone_url": f"{origin}/"}})
            headers = {
                "x-gitea-event": "push",
                "x-gitea-delivery": delivery,
                "x-gitea-signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            }
        else:
            body = orjson.dumps({"url": str(origin)})
            headers = {
                "x-metre-delivery": delivery,
                "x-metre-signature": generic_signature(SECRET, delivery, body),
            }
        headers["content-type"] = "application/json"
        r = await live.client.post(f"/api/v1/hooks/{provider}", content=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json() == {"delivery": delivery, "polled": [repo["id"]]}
        await _served_after_push(live, repo["id"], origin)


async def test_refusals_change_nothing(store: PgStore, tmp_path: Path) -> None:
    work, origin = _origin(tmp_path)
    async with live_metre(store, tmp_path, webhook_max_bytes=4096) as live:
        repo = await _register(live, origin)  # no secret yet
        rid = repo["id"]
        _push(work, 1, "refused")
        body = github_push(origin)
        state = (await live.client.get(f"/api/v1/repos/{rid}")).json()

        async def refused(status: int, words: str, **kw: Any) -> None:
            content = kw.pop("content", body)
            headers = kw.pop("headers", github_headers(content))
            path = kw.pop("path", "/api/v1/hooks/github")
            r = await live.client.post(path, content=content, headers=headers)
            assert r.status_code == status, (words, r.text)
            assert words in r.json()["error"]["message"], r.text
            now = (await live.client.get(f"/api/v1/repos/{rid}")).json()
            assert now == state  # not polled, nothing changed
            assert await _deliveries(live.store) == 0

        await refused(403, "has no webhook secret")
        r = await live.client.patch(f"/api/v1/repos/{rid}", json={"webhook_secret": SECRET})
        assert r.status_code == 200, r.text
        assert r.json()["webhook"] is True
        assert SECRET not in r.text
        state = r.json()

        await refused(403, "does not match", headers=github_headers(body, secret="wrong secret"))
        unsigned = {k: v for k, v in github_headers(body).items() if k != "x-hub-signature-256"}
        await refused(403, "not signed", headers=unsigned)
        tampered = body.replace(b"ada", b"eve")
        await refused(403, "does not match", content=tampered, headers=github_headers(body))
        nodelivery = {k: v for k, v in github_headers(body).items() if k != "x-github-delivery"}
        await refused(400, "delivery id", headers=nodelivery)
        other = orjson.dumps({"repository": {"clone_url": str(tmp_path / "elsewhere.git")}})
        await refused(404, "no registered repository", content=other)
        await refused(400, "names no repository", content=b'{"zen": "x"}')
        await refused(400, "not valid JSON", content=b"{nope")
        await refused(400, "not a JSON object", content=b"[1]")
        form = {**github_headers(body), "content-type": "application/x-www-form-urlencoded"}
        await refused(415, "application/json", headers=form)
        big = orjson.dumps({"repository": {"clone_url": str(origin)}, "pad": "x" * 5000})
        await refused(413, "larger than 4096", content=big)
        # Generic: the delivery id is signed too, so a captured call under a new id fails.
        gbody = orjson.dumps({"url": str(origin)})
        gheaders = {
            "content-type": "application/json",
            "x-metre-delivery": "d-2",
            "x-metre-signature": generic_signature(SECRET, "d-1", gbody),
        }
        await refused(
            403, "does not match", path="/api/v1/hooks/generic", content=gbody, headers=gheaders
        )
        r = await live.client.post(
            "/api/v1/hooks/bitbucket", content=body, headers=github_headers(body)
        )
        assert r.status_code == 422

        # Paused: refused like POST /poll, and the delivery is not spent (a redelivery after
        # resume is accepted).
        paused = await live.client.post(f"/api/v1/repos/{rid}/pause")
        state = paused.json()
        headers = github_headers(body)
        await refused(409, "paused", headers=headers)

        # A ping (not a push) is acknowledged and ignored.
        ping = {**github_headers(body), "x-github-event": "ping"}
        await refused_ok(live, body, ping)
        assert (await live.client.get(f"/api/v1/repos/{rid}")).json() == state


async def refused_ok(live: Live, body: bytes, headers: dict[str, str]) -> None:
    r = await live.client.post("/api/v1/hooks/github", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["polled"] == []
    assert "not a push" in r.json()["ignored"]


async def test_secrets_are_validated_and_cleared(store: PgStore, tmp_path: Path) -> None:
    _, origin = _origin(tmp_path)
    async with live_metre(store, tmp_path) as live:
        r = await live.client.post(
            "/api/v1/repos", json={"url": str(origin), "webhook_secret": "Xq7zZ"}
        )
        assert r.status_code == 422, r.text
        assert "Xq7zZ" not in r.text  # the refused secret is not echoed
        assert (await live.client.get("/api/v1/repos")).json()["repos"] == []
        repo = await _register(live, origin, webhook_secret=SECRET)
        rid = repo["id"]
        r = await live.client.patch(f"/api/v1/repos/{rid}", json={})
        assert r.status_code == 422
        r = await live.client.patch(f"/api/v1/repos/{rid}", json={"webhook_secret": None})
        assert r.status_code == 200
        assert r.json()["webhook"] is False
        assert r.json()["branch"] is None  # the branch was left alone
        r = await live.client.patch("/api/v1/repos/999", json={"webhook_secret": SECRET})
        assert r.status_code == 404
        stored = await live.store.pool.fetchval("SELECT webhook_secret FROM repos WHERE id=$1", rid)
        assert stored is None


async def test_unknown_repository_is_not_told_when_reads_need_a_token(
    store: PgStore, tmp_path: Path
) -> None:
    """With reads behind a token, a caller who cannot sign learns nothing of which URLs are
    registered: an unknown repository gets the same 403 as a wrong signature."""
    _, origin = _origin(tmp_path)
    async with live_metre(store, tmp_path, api_tokens=TOKEN, read_requires_token=True) as live:
        r = await live.client.post(
            "/api/v1/repos", json={"url": str(origin), "webhook_secret": SECRET}, headers=_auth()
        )
        assert r.status_code == 201
        other = orjson.dumps({"repository": {"clone_url": "/nowhere.git"}})
        unknown = await live.client.post(
            "/api/v1/hooks/github", content=other, headers=github_headers(other)
        )
        body = github_push(origin)
        wrong = await live.client.post(
            "/api/v1/hooks/github", content=body, headers=github_headers(body, secret="wrong!!!")
        )
        assert unknown.status_code == wrong.status_code == 403
        assert unknown.json() == wrong.json()
        # The rest of the API still needs the token.
        assert (await live.client.get("/api/v1/repos")).status_code == 401


async def test_webhooks_are_rate_limited(store: PgStore, tmp_path: Path) -> None:
    """Signed or not, webhook calls spend the caller's rate-limit tokens like any request."""
    async with live_metre(
        store, tmp_path, rate_limit=1, rate_burst=2, rate_limit_loopback=True
    ) as live:
        codes = []
        for _ in range(4):
            r = await live.client.post(
                "/api/v1/hooks/github", content=b"{}", headers={"content-type": "application/json"}
            )
            codes.append(r.status_code)
        assert codes[:2] == [400, 400]
        assert codes[2:] == [429, 429]
