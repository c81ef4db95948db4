"""metre.api.security: tokens and rate limits (pure bucket; middleware over the real app, store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from metre.api.app import create_app
from metre.api.security import ApiGuard, FailureBackoff, TokenBucket, failure_key, token_matches
from metre.processors.store import PgStore
from metre.settings import Settings


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


def test_failure_backoff_doubles_then_forgets() -> None:
    backoff = FailureBackoff(allowed=3, cap=8)
    assert [backoff.failed("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert backoff.blocked("a", 0.0) == 0.0
    assert backoff.failed("a", 0.0) == 1.0  # the 4th in a row: blocked 1 s
    assert backoff.blocked("a", 0.5) == pytest.approx(0.5)
    assert backoff.blocked("b", 0.5) == 0.0  # other keys are their own
    assert [backoff.failed("a", t) for t in (1.0, 3.0, 7.0, 15.0, 23.0)] == [2, 4, 8, 8, 8]
    assert backoff.blocked("a", 30.9) == pytest.approx(0.1)
    assert backoff.failed("a", 31.0 + 8) == 0.0  # `cap` quiet seconds after the block: forgotten
    backoff.failed("a", 40.0)
    backoff.failed("a", 40.0)
    backoff.succeeded("a")  # a correct token clears the count
    assert backoff.failed("a", 40.0) == 0.0


def test_failure_key_groups_an_ipv6_host_by_its_64() -> None:
    assert failure_key("10.1.2.3") == "addr:10.1.2.3"
    assert failure_key("2001:db8:1:2::5") == failure_key("2001:db8:1:2:ffff::1")
    assert failure_key("2001:db8:1:2::5") != failure_key("2001:db8:1:3::5")
    assert failure_key("::ffff:10.1.2.3") == "addr:::ffff:a01:203"
    assert failure_key(None) == "addr:unknown"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_wrong_tokens_are_refused_with_backoff(tmp_path: Path, store: PgStore) -> None:
    # The guard under test has a clock of its own; the app inside it is open.
    clock = _Clock()
    guard = ApiGuard(
        create_app(Settings(data_dir=tmp_path, rate_limit=0, auth_failure_limit=0), store),
        tokens=["alpha-token"],
        clock=clock,
        auth_failure_limit=5,
        auth_backoff_cap=60,
    )

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=guard, client=(address, 5555))
        return httpx.AsyncClient(transport=transport, base_url="http://api.test")

    body = {"url": "https://nowhere.invalid/x.git"}
    wrong = {"Authorization": "Bearer wrong"}
    right = {"Authorization": "Bearer alpha-token"}
    async with client("127.0.0.1") as attacker, client("10.0.0.2") as other:
        post = attacker.post
        codes = [
            (await post("/api/v1/repos", json=body, headers=wrong)).status_code for _ in range(200)
        ]
        assert codes[:6] == [401] * 6  # the 6th wrong token in a row starts the first block
        assert set(codes[6:]) == {429}
        refused = await post("/api/v1/repos", json=body, headers=wrong)
        assert refused.headers["retry-after"] == "1"
        assert "wrong API tokens" in refused.json()["error"]["message"]
        assert refused.json()["error"]["status"] == 429
        # while refused, even the right token is not compared from that client
        assert (await post("/api/v1/repos", json=body, headers=right)).status_code == 429
        # another client with the right token, or a wrong one, is unaffected
        assert (await other.post("/api/v1/repos", json=body, headers=right)).status_code == 422
        assert (await other.post("/api/v1/repos", json=body, headers=wrong)).status_code == 401
        # reads stay public for the refused client, and writes without a token are no guess
        assert (await attacker.get("/api/v1/repos")).status_code == 200
        assert (await post("/api/v1/repos", json=body)).status_code == 401
        # the block doubles with each wrong token after it ends: 2 s, then 4 s
        for block in (2, 4):
            clock.now += block / 2 + 0.5  # the previous block is over
            assert (await post("/api/v1/repos", json=body, headers=wrong)).status_code == 401
            r = await post("/api/v1/repos", json=body, headers=wrong)
            assert r.status_code == 429
            assert r.headers["retry-after"] == str(block)
        # once the block is over, the right token gets through and clears the count
        clock.now += 4
        assert (await post("/api/v1/repos", json=body, headers=right)).status_code == 422
        codes = [
            (await post("/api/v1/repos", json=body, headers=wrong)).status_code for _ in range(6)
        ]
        assert codes == [401] * 6


async def test_wrong_tokens_are_limited_by_default(tmp_path: Path, store: PgStore) -> None:
    """The same through create_app's settings (the default limit), on the real clock."""
    settings = Settings(data_dir=tmp_path, api_tokens=SecretStr("alpha"), rate_limit=0)
    wrong = {"Authorization": "Bearer wrong"}
    async with _client(settings, store, "127.0.0.1") as client:
        codes = [
            (await client.post("/api/v1/repos/1/poll", headers=wrong)).status_code
            for _ in range(200)
        ]
    assert codes[: settings.auth_failure_limit] == [401] * settings.auth_failure_limit
    # each wrong token after a block doubles the next: however slow the machine, few get by
    assert codes.count(401) <= settings.auth_failure_limit + 10
    assert codes.count(429) >= 180


async def test_wrong_tokens_backoff_can_be_disabled(tmp_path: Path, store: PgStore) -> None:
    settings = Settings(
        data_dir=tmp_path, api_tokens=SecretStr("alpha"), rate_limit=0, auth_failure_limit=0
    )
    wrong = {"Authorization": "Bearer wrong"}
    async with _client(settings, store) as client:
        codes = {
            (await client.post("/api/v1/repos/1/poll", headers=wrong)).status_code
            for _ in range(50)
        }
        assert codes == {401}
