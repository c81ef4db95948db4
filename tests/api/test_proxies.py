"""Rate limits behind reverse proxies: who the client is, and when loopback is exempt
(metre.api.security.client_address is pure; the rest goes through the real app and store)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from metre.api.app import create_app
from metre.api.security import client_address
from metre.processors.store import PgStore
from metre.settings import Settings

NETS = [ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.0.0.0/8")]


def test_client_address_rightmost_untrusted_hop() -> None:
    assert client_address("203.0.113.9", ["1.2.3.4"], NETS) == "203.0.113.9"  # peer untrusted
    assert client_address("127.0.0.1", [], NETS) == "127.0.0.1"  # trusted, nothing forwarded
    assert client_address("127.0.0.1", ["1.2.3.4"], NETS) == "1.2.3.4"
    # the client may forge hops on the left; the proxies append on the right
    assert client_address("127.0.0.1", ["6.6.6.6, 1.2.3.4, 10.1.1.1"], NETS) == "1.2.3.4"
    assert client_address("127.0.0.1", ["6.6.6.6", "1.2.3.4"], NETS) == "1.2.3.4"  # two headers
    assert client_address("127.0.0.1", ["10.2.2.2, 10.1.1.1"], NETS) == "10.2.2.2"  # all trusted
    assert client_address("127.0.0.1", ["[2001:db8::1]"], NETS) == "[2001:db8::1]"
    assert client_address("127.0.0.1", ["x" * 500], NETS) == "x" * 64  # bounded key
    assert client_address("127.0.0.1", ["1.2.3.4"], []) == "127.0.0.1"  # nobody trusted
    assert client_address(None, ["1.2.3.4"], NETS) is None


def test_settings_parse_and_refuse_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRE_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8 ,::1")
    monkeypatch.setenv("METRE_RATE_LIMIT_LOOPBACK", "true")
    s = Settings()
    assert [str(n) for n in s.trusted_networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert s.rate_limit_loopback is True
    assert Settings(trusted_proxies="").trusted_networks == []
    with pytest.raises(ValidationError, match="not an address or CIDR"):
        Settings(trusted_proxies="127.0.0.1, proxy.example.com")


def _client(settings: Settings, store: PgStore, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, store), client=(peer, 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def _codes(api: httpx.AsyncClient, n: int, forwarded: str | None = None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return [(await api.get("/api/v1/repos", headers=headers)).status_code for _ in range(n)]


async def test_behind_a_trusted_local_proxy_each_client_is_limited(
    tmp_path: Path, store: PgStore
) -> None:
    settings = Settings(
        data_dir=tmp_path, rate_limit=0.5, rate_burst=2, trusted_proxies="127.0.0.1"
    )
    async with _client(settings, store, "127.0.0.1") as proxy:
        assert await _codes(proxy, 3, "198.51.100.1") == [200, 200, 429]
        # forging a hop on the left does not buy a fresh bucket
        assert await _codes(proxy, 1, "203.0.113.77, 198.51.100.1") == [429]
        assert await _codes(proxy, 2, "198.51.100.2") == [200, 200]  # another client
        # a loopback peer that is a trusted proxy is not exempt itself
        assert await _codes(proxy, 3) == [200, 200, 429]
        limited = await proxy.get("/api/v1/repos", headers={"X-Forwarded-For": "198.51.100.1"})
        assert limited.headers["retry-after"] == "2"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    tmp_path: Path, store: PgStore
) -> None:
    settings = Settings(
        data_dir=tmp_path, rate_limit=0.5, rate_burst=1, trusted_proxies="127.0.0.1"
    )
    async with _client(settings, store, "203.0.113.5") as far:
        assert await _codes(far, 1, "198.51.100.1") == [200]
        assert await _codes(far, 1, "198.51.100.2") == [429]  # same peer, same bucket
        assert await _codes(far, 1, "127.0.0.1") == [429]  # no loopback by claiming it


async def test_default_a_forwarding_loopback_peer_is_limited(
    tmp_path: Path, store: PgStore
) -> None:
    """No trusted proxy configured: a local reverse proxy's requests (they carry a forwarding
    header) share one limited bucket instead of all going unlimited; the local CLI without
    one stays exempt."""
    settings = Settings(data_dir=tmp_path, rate_limit=0.5, rate_burst=1)
    async with _client(settings, store, "127.0.0.1") as local:
        assert await _codes(local, 4) == [200] * 4
        assert await _codes(local, 2, "198.51.100.1") == [200, 429]
        assert await _codes(local, 1, "198.51.100.2") == [429]  # one bucket: the proxy's
        r = await local.get("/api/v1/repos", headers={"Forwarded": "for=198.51.100.3"})
        assert r.status_code == 429
    async with _client(settings, store, "::1") as local6:
        assert await _codes(local6, 3) == [200] * 3


async def test_loopback_setting_overrides(tmp_path: Path, store: PgStore) -> None:
    always = Settings(data_dir=tmp_path, rate_limit=0.5, rate_burst=1, rate_limit_loopback=True)
    async with _client(always, store, "127.0.0.1") as local:
        assert await _codes(local, 2) == [200, 429]
    never = Settings(
        data_dir=tmp_path,
        rate_limit=0.5,
        rate_burst=1,
        rate_limit_loopback=False,
        trusted_proxies="127.0.0.1",
    )
    async with _client(never, store, "127.0.0.1") as proxy:
        assert await _codes(proxy, 3, "127.0.0.1") == [200] * 3  # a local client via the proxy
        assert await _codes(proxy, 2, "198.51.100.1") == [200, 429]
