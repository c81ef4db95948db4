"""api.security: tokens and rate limits (pure bucket; middleware over the real app and store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from api.security import TokenBucket, token_matches
from metre.settings import Settings
from processors.store import PgStore


def test_bucket_admits_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a", 0.0) == pytest.approx(0.5)
    assert bucket.take("b", 0.0) == 0.0  # another client has its own bucket
    assert bucket.take("a", 0.5) == 0.0  # one token came back after 1/rate s
    assert bucket.take("a", 0.5) == pytest.approx(0.5)
    assert bucket.take("a", 100.0) == 0.0  # refills, but never beyond the burst
    assert [bucket.take("a", 100.0) for _ in range(3)][-1] == pytest.approx(0.5)


def test_bucket_forgets_least_recent_clients_beyond_its_bound() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        assert bucket.take(key, 0.0) == 0.0
    assert bucket.take("a", 0.0) == 0.0  # forgotten: a fresh bucket
    assert bucket.take("c", 0.0) > 0


def test_token_matches_checks_every_token() -> None:
    assert token_matches("two", ["one", "two", "three"])
    assert not token_matches("tw", ["one", "two"])
    assert not token_matches("", ["one"])
    assert not token_matches("x", [])


def _client(settings: Settings, store: PgStore, address: str = "10.9.8.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, store), client=(address, 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
async def guarded(tmp_path: Path, store: PgStore) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path, api_tokens=SecretStr("alpha-token, beta-token"), rate_limit=0
    )
    async with _client(settings, store) as client:
        yield client


async def test_writes_need_a_token(guarded: httpx.AsyncClient) -> None:
    body = {"url": "https://nowhere.invalid/x.git"}
    for headers, message in (
        ({}, "needs an API token"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": "Basic YWxwaGEtdG9rZW4="}, "needs an API token"),
        ({"Authorization": "Bearer alpha-toke"}, "not valid"),
    ):
        r = await guarded.post("/api/v1/repos", json=body, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert message in r.json()["error"]["message"]
        assert r.json()["error"]["status"] == 401
    r = await guarded.post("/api/v1/repos/1/poll", headers={})
    assert r.status_code == 401
    # with a valid token the request reaches the route (which refuses the URL on its merits)
    for token in ("alpha-token", "beta-token"):
        r = await guarded.post(
            "/api/v1/repos", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 422, r.text
    assert (await guarded.get("/api/v1/repos")).status_code == 200  # reads stay public
    assert (await guarded.get("/healthz")).status_code == 200


async def test_reads_can_require_a_token(tmp_path: Path, store: PgStore) -> None:
    settings = Settings(data_dir=tmp_path, api_tokens=SecretStr("alpha"), read_requires_token=True)
    async with _client(settings, store) as client:
        r = await client.get("/api/v1/repos")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        ok = await client.get("/api/v1/repos", headers={"Authorization": "Bearer alpha"})
        assert ok.status_code == 200
        assert (await client.get("/healthz")).status_code == 200  # probes stay open


async def test_no_tokens_configured_means_open(tmp_path: Path, store: PgStore) -> None:
    async with _client(Settings(data_dir=tmp_path), store) as client:
        r = await client.post("/api/v1/repos", json={"url": "https://nowhere.invalid/x.git"})
        assert r.status_code == 422  # reached the route


async def test_rate_limit_per_client_with_retry_after(tmp_path: Path, store: PgStore) -> None:
    settings = Settings(
        data_dir=tmp_path, rate_limit=0.5, rate_burst=3, api_tokens=SecretStr("alpha")
    )
    async with _client(settings, store, "10.0.0.1") as one, _client(settings, store) as two:
        codes = [(await one.get("/api/v1/repos")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = await one.get("/api/v1/repos")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        assert "too many requests" in limited.json()["error"]["message"]
        assert (await two.get("/api/v1/repos")).status_code == 200  # another address
        # a valid token is its own client, whatever the address
        auth = {"Authorization": "Bearer alpha"}
        assert (await one.get("/api/v1/repos", headers=auth)).status_code == 200
        # an invalid token does not buy a fresh bucket
        bogus = {"Authorization": "Bearer made-up"}
        assert (await one.get("/api/v1/repos", headers=bogus)).status_code == 429


async def test_loopback_clients_are_not_rate_limited(tmp_path: Path, store: PgStore) -> None:
    settings = Settings(data_dir=tmp_path, rate_limit=0.5, rate_burst=1)
    async with _client(settings, store, "127.0.0.1") as local, _client(settings, store) as far:
        assert [(await local.get("/api/v1/repos")).status_code for _ in range(5)] == [200] * 5
        assert [(await far.get("/api/v1/repos")).status_code for _ in range(2)] == [200, 429]
