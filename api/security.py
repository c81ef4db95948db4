"""Bearer tokens and per-client rate limits for the HTTP API.

`TokenBucket` is pure (time is passed in); `ApiGuard` is the ASGI middleware (I/O) that applies
both to every request before routing, so routes added later are covered without opting in.

- Tokens: when METRE_API_TOKENS is set, writes (POST, PUT, PATCH, DELETE) need
  ``Authorization: Bearer <token>``; reads too with METRE_READ_REQUIRES_TOKEN. The given token
  is compared with every configured one by `hmac.compare_digest` (no early exit: the time
  taken says nothing about which token, or which prefix, matched). The liveness and readiness
  probes (/healthz, /readyz), the Prometheus metrics (/metrics: counts, no data) and the
  dashboard's page and assets (`/`, `/ui/*`: no data in them; the page sends the user's token
  itself) stay open, and so do push webhooks (POST /api/v1/hooks/*), which their route
  authenticates by signature. A refusal is 401 with
  ``WWW-Authenticate: Bearer``.
- Rate limits: a token bucket per client (the token when one is given, else the client
  address): METRE_RATE_LIMIT requests per second, bursts of METRE_RATE_BURST; 0 disables.
  A refusal is 429 with ``Retry-After`` (whole seconds, at least 1).
- Failed authentication: a client (its address, an IPv6 client by its /64) that presents
  wrong tokens more than METRE_AUTH_FAILURE_LIMIT times in a row is then refused with 429
  and ``Retry-After`` for 1 s, then 2 s, 4 s ... up to METRE_AUTH_BACKOFF_CAP after each
  further wrong token; while refused, no token it sends is even compared (a guess made then
  tells nothing). A correct token clears the count; so do METRE_AUTH_BACKOFF_CAP seconds
  without a failure. Loopback clients are not exempt. Other clients are unaffected, with or
  without a token. A request without any token is not a guess and is not counted.
- The client address: the direct peer, unless the peer is one of METRE_TRUSTED_PROXIES
  (addresses or CIDRs); then the rightmost X-Forwarded-For hop that is not a trusted proxy
  (hops left of it may be forged by the client; the rightmost were appended by proxies we
  trust). With no trusted proxy, X-Forwarded-For is ignored.
- Loopback clients (the CLI and dashboard of `metre up`) are exempt from the limit by default
  only while no trusted proxy is configured and the request carries no forwarding header (a
  loopback peer that forwards is a local reverse proxy: its clients then share its one
  bucket, limited, rather than all going unlimited). METRE_RATE_LIMIT_LOOPBACK=true limits
  loopback always, false exempts a loopback client always.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from metre.api.responses import error_body

__all__ = [
    "ApiGuard",
    "FailureBackoff",
    "IPNetwork",
    "TokenBucket",
    "client_address",
    "failure_key",
    "token_matches",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# The dashboard's page and assets hold no data (the page asks /api/v1 with the user's token).
OPEN_PREFIXES = ("/ui/",)
OPEN_PAGES = frozenset({"/"})
# Push webhooks carry no token: their route checks the body's signature against the
# repository's secret instead (api/routes/hooks.py). Exact paths, POST only.
SIGNED_PATHS = frozenset(f"/api/v1/hooks/{p}" for p in ("github", "gitlab", "gitea", "generic"))


def is_open(path: str, method: str) -> bool:
    """Whether `path` is served without a token even when reads need one."""
    if path in OPEN_PATHS:
        return True
    if method == "POST" and path in SIGNED_PATHS:
        return True
    if method not in ("GET", "HEAD"):
        return False
    return path in OPEN_PAGES or path.startswith(OPEN_PREFIXES)


def token_matches(given: str, tokens: Sequence[str]) -> bool:
    """Whether `given` is one of `tokens`, comparing against all of them in constant time."""
    given_bytes = given.encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token.encode())
    return found


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """Per-key token buckets: `rate` tokens per second, at most `burst` stored.

    At most `max_keys` keys are remembered (least recently used forgotten first): a forgotten
    key starts again with a full bucket, which only ever errs towards admitting.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Spend one token of `key` at time `now` (seconds, monotonic): 0.0 when admitted,
        else the seconds until a token will be available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    until: float


class FailureBackoff:
    """Failed authentications per key (pure; time is passed in): `allowed` in a row are free,
    each further one blocks the key for twice as long as the one before (1 s first, at most
    `cap`). A key with no failure for `cap` seconds after its block is forgotten; at most
    `max_keys` keys are remembered (least recently failed forgotten first)."""

    def __init__(self, allowed: int, cap: float, max_keys: int = 100_000) -> None:
        if allowed < 1 or cap < 1:
            raise ValueError("allowed must be >= 1 and cap >= 1")
        self.allowed = allowed
        self.cap = cap
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def blocked(self, key: str, now: float) -> float:
        """Seconds `key` is still refused for (0.0: not refused)."""
        state = self._keys.get(key)
        return 0.0 if state is None else max(0.0, state.until - now)

    def failed(self, key: str, now: float) -> float:
        """Count a failure of `key` at `now`; the seconds it is now blocked for (0.0: none)."""
        state = self._keys.get(key)
        if state is None or now - max(state.last, state.until) >= self.cap:
            state = self._keys[key] = _Failures(0, now, now)
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        self._keys.move_to_end(key)
        state.count += 1
        state.last = now
        beyond = state.count - self.allowed
        if beyond <= 0:
            return 0.0
        block = min(self.cap, 2.0 ** min(beyond - 1, 62))
        state.until = now + block
        return block

    def succeeded(self, key: str) -> None:
        """A correct token: the key starts afresh."""
        self._keys.pop(key, None)


def failure_key(address: str | None) -> str:
    """The key failed authentications are counted under: the address, an IPv6 one by its /64
    (one host commonly holds a whole /64: per address it could try without end)."""
    ip = _ip(address or "")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return "net:" + str(ipaddress.IPv6Network((ip, 64), strict=False))
    return "addr:" + (str(ip) if ip is not None else (address or "unknown"))


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


_FORWARDING = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})
_MAX_HOP = 64
"""A forwarded hop that is not an address is used as the key cut to this many characters."""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(text: str, trusted: Sequence[IPNetwork]) -> bool:
    ip = _ip(text)
    return ip is not None and any(ip in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str | None:
    """The client a request comes from (pure): `peer` itself unless it is a trusted proxy;
    then the rightmost X-Forwarded-For hop that is not (the leftmost when all are)."""
    if peer is None or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop[:_MAX_HOP]
    return hops[0][:_MAX_HOP] if hops else peer


class ApiGuard:
    """ASGI middleware: authentication, then the rate limit, then the application."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[str] = (),
        read_requires_token: bool = False,
        rate: float = 0.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        trusted_proxies: Sequence[IPNetwork] = (),
        limit_loopback: bool | None = None,
        auth_failure_limit: int = 0,
        auth_backoff_cap: float = 300.0,
    ) -> None:
        self.app = app
        self.failures = (
            FailureBackoff(auth_failure_limit, auth_backoff_cap) if auth_failure_limit > 0 else None
        )
        self.trusted_proxies = tuple(trusted_proxies)
        self.limit_loopback = limit_loopback
        self.tokens = tuple(tokens)
        self.read_requires_token = read_requires_token
        self.bucket = TokenBucket(rate, burst) if rate > 0 else None
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope.get("headers", []))
        method = scope.get("method", "GET").upper()
        guarded = method in WRITE_METHODS or self.read_requires_token
        checked = bool(self.tokens) and guarded and not is_open(scope.get("path", ""), method)
        counted = self.failures is not None and checked
        failure_at = failure_key(self._client(scope)) if counted else ""
        if self.failures is not None and counted and token is not None:
            wait = self.failures.blocked(failure_at, self.clock())
            if wait > 0:  # refused before the token is compared: a guess now tells nothing
                retry = max(1, math.ceil(wait))
                await _reply(
                    send,
                    429,
                    f"too many wrong API tokens from this client; retry in {retry} s",
                    [(b"retry-after", str(retry).encode())],
                )
                return
        valid = token is not None and bool(self.tokens) and token_matches(token, self.tokens)
        if checked and not valid:
            message = (
                "this request needs an API token (Authorization: Bearer <token>)"
                if token is None
                else "the API token is not valid"
            )
            if self.failures is not None and counted and token is not None:
                self.failures.failed(failure_at, self.clock())
            await _reply(send, 401, message)
            return
        if self.failures is not None and counted and valid:
            self.failures.succeeded(failure_at)
        if self.bucket is not None and not self._exempt(scope):
            key = self._client_key(scope, token if valid else None)
            wait = self.bucket.take(key, self.clock())
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _reply(
                    send,
                    429,
                    f"too many requests: at most {self.bucket.rate:g} per second "
                    f"(bursts of {self.bucket.burst:g}); retry in {retry} s",
                    [(b"retry-after", str(retry).encode())],
                )
                return
        await self.app(scope, receive, send)

    def _client(self, scope: Scope) -> str | None:
        peer = scope.get("client")
        headers = scope.get("headers", [])
        forwarded = [v.decode("latin-1") for n, v in headers if n.lower() == b"x-forwarded-for"]
        return client_address(str(peer[0]) if peer else None, forwarded, self.trusted_proxies)

    def _exempt(self, scope: Scope) -> bool:
        """Whether the rate limit skips this request (a loopback client; see the module)."""
        if self.limit_loopback:
            return False
        ip = _ip(self._client(scope) or "")
        if ip is None or not ip.is_loopback:
            return False
        if self.limit_loopback is False:
            return True
        forwarded = any(n.lower() in _FORWARDING for n, _ in scope.get("headers", []))
        return not self.trusted_proxies and not forwarded

    def _client_key(self, scope: Scope, token: str | None) -> str:
        if token is not None:  # a valid token is one client, from whichever address
            return "token:" + hashlib.sha256(token.encode()).hexdigest()
        return "addr:" + (self._client(scope) or "unknown")


async def _reply(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(error_body(status, message))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
